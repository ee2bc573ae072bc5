"""The package surface: exported names, typing marker, and what importing it pulls in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hookgate_verifier

PACKAGE_DIR = Path(hookgate_verifier.__file__).parent


def test_all_names_exist_and_public_names_are_exported() -> None:
    exported = set(hookgate_verifier.__all__)
    public = {name for name in vars(hookgate_verifier) if not name.startswith("_")}
    modules = {
        name
        for name, value in vars(hookgate_verifier).items()
        if type(value) is type(sys) and not name.startswith("_")
    }
    assert exported == public - modules
    for name in exported:
        assert getattr(hookgate_verifier, name) is not None


def test_py_typed_marker_ships() -> None:
    assert (PACKAGE_DIR / "py.typed").is_file()


def test_importing_the_library_loads_no_framework_or_optional_dependency() -> None:
    code = (
        "import sys, hookgate_verifier, hookgate_verifier.cli, hookgate_verifier.redis_store\n"
        "heavy = {'aiohttp', 'starlette', 'flask', 'fastapi', 'redis', 'cryptography',"
        " 'gateway', 'worker'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_source_never_imports_the_gateway_or_worker() -> None:
    for path in PACKAGE_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & {"gateway", "worker"}, path


def test_installs_alone_into_an_empty_venv(tmp_path: Path) -> None:
    """`pip install ./verifier` brings no third-party package, and the library works."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    project = Path(__file__).resolve().parent.parent
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(project)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()}
    assert installed - {"pip", "setuptools", "wheel"} == {"hookgate-verifier"}
    check = (
        "from hookgate_verifier import Verifier\n"
        "v = Verifier('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', clock=lambda: 1614265330)\n"
        "print(v.verify(b'{\"test\": 2432232314}', {\n"
        "    'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek', 'webhook-timestamp': '1614265330',\n"
        "    'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='}))\n"
    )
    out = subprocess.run([python, "-c", check], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "{'test': 2432232314}"
