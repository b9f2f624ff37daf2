// regate console: keeps the recent-decisions table live. Every page works without this script;
// here the table is fetched again every few seconds with the same filters and its body swapped.
"use strict";
(function () {
  var table = document.querySelector("table[data-live]");
  if (!table) return;
  var status = document.getElementById("live-status");
  var every = 3000;
  function refresh() {
    if (document.hidden) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var body = page.getElementById("decisions-body");
        var current = document.getElementById("decisions-body");
        if (body && current && body.innerHTML !== current.innerHTML) {
          current.innerHTML = body.innerHTML;
        }
        if (status) status.textContent = "Newest first; live, updated " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function () {
        if (status) status.textContent = "Newest first; live updates paused (reload the page).";
      });
  }
  window.setInterval(refresh, every);
})();
