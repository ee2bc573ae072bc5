"""``hookgate dev``: what a newcomer runs first, end to end with its embedded Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support import hookgate_exe

from gateway.cli.redis_server import free_port

pytestmark = pytest.mark.e2e


class Dev:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
        env["HOOKGATE_PORT"] = str(port)
        self.process = subprocess.Popen(
            [hookgate_exe(), "dev", "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            assert self.process.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never printed:\n{''.join(self.lines)}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=30)
        self.reader.join(timeout=5)
        if self.process.stdout:
            self.process.stdout.close()
        return code


def post(port: int, token: str, path: str, body: dict[str, object]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status in (201, 202)
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def post_event(port: int, token: str, business: str = "bus_demo") -> str:
    event = {"business_id": business, "type": "credit.added", "data": {"amount": 1}}
    return str(post(port, token, "/v1/events", event)["id"])


def test_dev_delivers_and_verifies_an_event_then_restarts_with_its_data(tmp_path: Path) -> None:
    port = free_port()
    dev = Dev(tmp_path / "state", port)
    try:
        token = dev.wait_for(r"admin token\s+(\S+)").group(1)
        receiver_url = dev.wait_for(r"demo endpoint\s+ep_\w+ → (\S+)").group(1)
        dev.wait_for(r"curl -sS -X POST")
        # the CLI as the banner says to reach it: the printed export, the printed command
        exported = dev.wait_for(r"export HOOKGATE_URL=(\S+) HOOKGATE_ADMIN_TOKEN=(\S+)$")
        assert exported.groups() == (f"http://127.0.0.1:{port}", token)
        command = dev.wait_for(r"^\s+(\S+/hookgate) deliveries ls$").group(1)
        assert Path(dev.wait_for(r"`source (\S+/activate)`").group(1)).is_file()
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
        cli_env.update(HOOKGATE_URL=exported[1], HOOKGATE_ADMIN_TOKEN=exported[2])
        listing = subprocess.run(
            [command, "deliveries", "ls"], env=cli_env, capture_output=True, text=True, timeout=30
        )
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.split()[:2] == ["DELIVERY", "STATUS"]
        event_id = post_event(port, token)
        dev.wait_for(rf"hookgate.dev.receiver.verified.*webhook_id={event_id}")
        # an endpoint the newcomer creates, pointing at the sample receiver, verifies too
        mine = {"business_id": "bus_mine", "url": receiver_url, "event_types": ["credit.*"]}
        post(port, token, "/v1/endpoints", mine)
        own_event = post_event(port, token, "bus_mine")
        dev.wait_for(rf"hookgate.dev.receiver.verified.*webhook_id={own_event}")
    finally:
        assert dev.stop() == 0
    assert (tmp_path / "state" / "redis" / "appendonlydir").is_dir()
    assert not any("Traceback" in line for line in dev.lines)

    # a second start keeps the token, the demo endpoint and the data
    again = Dev(tmp_path / "state", port)
    try:
        assert again.wait_for(r"admin token\s+(\S+)").group(1) == token
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/events/{event_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert [d["status"] for d in json.loads(resp.read())["deliveries"]] == ["succeeded"]
    finally:
        assert again.stop() == 0


def test_dev_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        dev = Dev(tmp_path / "state", port)
        code = dev.process.wait(timeout=30)
        dev.reader.join(timeout=5)
        assert dev.process.stdout is not None
        dev.process.stdout.close()
    output = "".join(dev.lines)
    assert code == 2, output
    assert output.splitlines()[-1] == (
        f"hookgate: port {port} on 127.0.0.1 is in use: stop what holds it, or set HOOKGATE_PORT"
    )
    assert "Errno" not in output and "Traceback" not in output
