// Live refresh only: every page works without this file (each live page has a refresh link).
(function () {
  "use strict";

  // A replay's progress page polls its JSON progress endpoint until the replay completes.
  var main = document.querySelector("main[data-progress-url]");
  if (main) {
    var url = main.getAttribute("data-progress-url");
    var tick = function () {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (progress) {
          document.querySelectorAll("[data-field]").forEach(function (el) {
            var name = el.getAttribute("data-field");
            if (Object.prototype.hasOwnProperty.call(progress, name)) {
              el.textContent = String(progress[name]);
            }
          });
          var bar = document.querySelector("progress[data-bar]");
          if (bar) {
            bar.max = Math.max(progress.total, 1);
            bar.value = progress.done;
          }
          if (progress.state !== "completed") { window.setTimeout(tick, 1000); }
        })
        .catch(function () { /* stop polling: the refresh link still works */ });
    };
    window.setTimeout(tick, 500);
  }

  // A delivery still in progress reloads until it ends.
  var live = document.querySelector("main[data-reload-while-pending]");
  if (live) {
    var delay = parseInt(live.getAttribute("data-reload-while-pending"), 10) || 2000;
    window.setTimeout(function () { window.location.reload(); }, delay);
  }
})();
