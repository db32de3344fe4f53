// The quote's countdown: the time left, every second, in the page's language; a polite live
// region announces it now and then (each minute, at 30 and 10 seconds) and when the quote runs
// out. At expiry the convert form is put away and the form asking for a new quote shown, focused
// so that a keyboard user is right there. Without this script the server says the same on submit.
(function () {
  "use strict";
  function start(timer) {
    var expiresAt = Date.parse(timer.getAttribute("data-expires-at"));
    var shown = timer.querySelector("[data-countdown-left]");
    var announce = document.getElementById(timer.getAttribute("data-announce"));
    var live = document.getElementById(timer.getAttribute("data-live"));
    var expired = document.getElementById(timer.getAttribute("data-expired"));
    var leftTemplate = timer.getAttribute("data-left-template");
    var lastAnnounced = null;

    function format(seconds) {
      var minutes = Math.floor(seconds / 60);
      var rest = seconds % 60;
      return minutes + ":" + (rest < 10 ? "0" : "") + rest;
    }

    function tick() {
      var left = Math.max(0, Math.ceil((expiresAt - Date.now()) / 1000));
      shown.textContent = format(left);
      if (left === 0) {
        live.hidden = true;
        expired.hidden = false;
        announce.textContent = expired.getAttribute("data-announcement");
        var focus = expired.querySelector("[data-focus]");
        if (focus) { focus.focus(); }
        return;
      }
      var due = left % 60 === 0 || left === 30 || left === 10;
      if (lastAnnounced === null || (due && left !== lastAnnounced)) {
        announce.textContent = leftTemplate.replace("{time}", format(left));
        lastAnnounced = left;
      }
      window.setTimeout(tick, 1000 - (Date.now() % 1000));
    }
    tick();
  }
  document.querySelectorAll("[data-expires-at]").forEach(start);
})();
