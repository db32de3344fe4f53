// Sends a partner's records file as it is read from disk (XMLHttpRequest streams a File body),
// showing how much has gone; the server takes it whole, imports it, then the page shows the result.
(function () {
  "use strict";

  function start() {
    const form = document.getElementById("upload");
    if (form === null) return;
    const input = document.getElementById("records");
    const bar = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    // The reason quotes the partner's file: given as a function's result, a "$&", "$'" or "$`"
    // in it is put in as written, not read as a pattern of replace().
    const refused = (reason) => form.dataset.failed.replace("{reason}", () => reason);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const file = input.files[0];
      if (file === undefined) return;
      const request = new XMLHttpRequest();
      request.open("PUT", form.dataset.url);
      request.setRequestHeader("Content-Type", "text/csv");
      request.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
      bar.hidden = false;
      request.upload.addEventListener("progress", (progress) => {
        if (!progress.lengthComputable) return;
        const percent = Math.floor((100 * progress.loaded) / progress.total);
        bar.value = percent;
        bar.textContent = `${percent} %`;
        status.textContent = form.dataset.sending.replace("{percent}", percent);
      });
      request.upload.addEventListener("load", () => {
        bar.value = 100;
        status.textContent = form.dataset.comparing;
      });
      request.addEventListener("load", () => {
        let answer = {};
        try {
          answer = JSON.parse(request.responseText);
        } catch (error) {
          answer = { message: `HTTP ${request.status}` };
        }
        if (request.status === 200 && answer.location) {
          window.location.assign(answer.location);
        } else {
          status.textContent = refused(answer.message || `HTTP ${request.status}`);
        }
      });
      request.addEventListener("error", () => {
        status.textContent = refused("network");
      });
      request.send(file);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
