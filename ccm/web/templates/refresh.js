// Tick the countdowns every second and reload the page every 15 seconds
// (unless it is hidden), so the dashboard stays live without a framework.
(function () {
  var skew = Date.now() / 1000 - Number(document.body.dataset.now);
  function left(seconds) {
    if (seconds <= 0) { return "now"; }
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600),
        m = Math.floor(seconds % 3600 / 60), s = Math.floor(seconds % 60);
    if (d) { return d + "d" + h + "h"; }
    if (h) { return h + "h" + m + "m"; }
    return m + "m" + s + "s";
  }
  function tick() {
    var now = Date.now() / 1000 - skew;
    document.querySelectorAll("[data-until]").forEach(function (node) {
      node.textContent = left(Number(node.dataset.until) - now);
    });
  }
  setInterval(tick, 1000);
  setInterval(function () { if (!document.hidden) { location.reload(); } }, 15000);
}());
