// A refused form comes back as a page saying why. This puts the focus where the problem is, so
// that a keyboard user is right there and a screen reader starts there, not at the page's top:
// on the first field in error (aria-invalid; its aria-describedby names its error), or, when
// the refusal names no field, on the message that says why ([data-refusal]).
(function () {
  "use strict";
  var target = document.querySelector("main [aria-invalid='true']") || document.querySelector("main [data-refusal]");
  if (!target) { return; }
  if (!target.matches("input, select, textarea, button")) { target.setAttribute("tabindex", "-1"); }
  target.focus();
})();
