/* digitsite: the drawing canvas and the camera.
 *
 * Both send their picture through the same upload pipeline as the upload form (a POST to
 * upload_inline with the file in "images") and put the cards it answers with at the front
 * of the results; htmx then polls each card until its prediction is there.
 */
(function () {
  "use strict";

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
    } catch (error) {
      return "";
    }
  }

  // What the person says the picture shows (the page's "What do they show?" choice): auto,
  // digit or number.
  function readingChosen() {
    const chosen = document.querySelector('input[name="reading"]:checked');
    return chosen ? chosen.value : "auto";
  }

  function say(status, text, kind) {
    status.textContent = text;
    status.className = "small mt-2" + (kind === "error" ? " text-danger" : "");
  }

  async function uploadPicture(url, blob, name, results, status) {
    const data = new FormData();
    data.append("images", blob, name);
    // The page's consent box (upload form or draw page) covers camera shots and drawings too.
    const consent = document.querySelector('input[name="training_consent"]');
    if (consent && consent.checked) data.append("training_consent", "on");
    data.append("reading", readingChosen());
    say(status, "Uploading…");
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        body: data,
        headers: {"X-CSRFToken": csrfToken()},
        credentials: "same-origin",
      });
    } catch (error) {
      say(status, "Could not reach digitsite. Check your connection and try again.", "error");
      return false;
    }
    if (response.redirected) {
      say(status, "You have been signed out. Reload the page and sign in again.", "error");
      return false;
    }
    if (response.status !== 201 && response.status !== 400) {
      say(status, "The upload failed (error " + response.status + "). Please try again.", "error");
      return false;
    }
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    const errors = holder.querySelectorAll(".alert");
    if (errors.length) {
      say(status, Array.from(errors, (node) => node.textContent.trim()).join(" "), "error");
      errors.forEach((node) => node.remove());
    }
    const cards = Array.from(holder.children);
    cards.reverse().forEach((card) => {
      results.prepend(card);
      if (window.htmx) window.htmx.process(card);
    });
    const empty = document.getElementById("draw-empty") || document.getElementById("gallery-empty");
    if (cards.length && empty) empty.remove();
    if (cards.length) {
      say(status, "Classifying…");
      untilFinished(cards.map((column) => column.querySelector(".digit-card").id), status);
    }
    return cards.length > 0;
  }

  // htmx swaps each polled card whole (htmx:load fires on the new one): watch until every new card is finished, then
  // put the answer where the person is looking (beside the button) instead of "Classifying…".
  function untilFinished(ids, status) {
    function check() {
      const found = ids.map((id) => document.getElementById(id));
      if (!found.every((card) => card && ["done", "failed"].includes(card.dataset.status))) return;
      document.body.removeEventListener("htmx:load", check);
      const answers = found.map((card) => {
        const verdict = card.querySelector(".verdict");
        const failed = card.querySelector(".text-danger");
        return (verdict || failed || card).textContent.replace(/\s+/g, " ").trim();
      });
      say(status, answers.join(" · "));
    }
    document.body.addEventListener("htmx:load", check);
    check();
  }

  // "drawing 2026-11-27 16:40.png": what history and the admin call the picture, in the
  // person's own time.
  function stamped(kind, extension) {
    const now = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    const day = now.getFullYear() + "-" + pad(now.getMonth() + 1) + "-" + pad(now.getDate());
    return kind + " " + day + " " + pad(now.getHours()) + ":" + pad(now.getMinutes()) + "." + extension;
  }

  // The live answer: the canvas goes to the worker (through draw/preview/) a moment after the
  // pen pauses, and at least every MAX_WAIT_MS during a long stroke; one request at a time,
  // and a drawing that changed meanwhile is sent as soon as the one before is answered.
  const QUIET_MS = 200;
  const MAX_WAIT_MS = 700;
  const POLL_MS = 80;
  // A preview no worker starts within DRAW_PREVIEW_EXPIRES_SECONDS (10 s) is dropped; then the
  // same drawing is sent again a little later (a worker may be starting), until one answers.
  const POLL_FOR_MS = 11000;
  const RETRY_MS = 2000;

  function initLive(panel, canvas) {
    const answer = panel.querySelector("#live-answer");
    const idle = answer.innerHTML;
    let timer = null;
    let firstChange = null;
    let busy = false;
    let again = false;
    let generation = 0;

    function show(html) {
      answer.innerHTML = html;
    }

    function note(text) {
      const line = document.createElement("p");
      line.className = "small text-body-secondary mb-0";
      line.id = "live-error";
      line.textContent = text;
      answer.replaceChildren(line);
    }

    async function until(url, mine) {
      const deadline = performance.now() + POLL_FOR_MS;
      while (performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        if (mine !== generation || again) return;  // cleared, or a newer drawing replaces this one
        const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
        if (response.status === 200) {
          const html = await response.text();
          if (mine === generation) show(html);
          return;
        }
        if (response.status !== 202) return;
      }
      note("No live answer yet: the classifier is busy or starting. “Classify drawing” still works.");
      if (timer === null) timer = setTimeout(send, RETRY_MS);
    }

    async function send() {
      timer = null;
      firstChange = null;
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      again = false;
      const mine = generation;
      panel.classList.add("updating");
      try {
        const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
        const data = new FormData();
        data.append("drawing", blob, "drawing.png");
        data.append("reading", readingChosen());
        const response = await fetch(panel.dataset.previewUrl, {
          method: "POST",
          body: data,
          headers: {"X-CSRFToken": csrfToken()},
          credentials: "same-origin",
        });
        if (mine !== generation) return;
        if (response.status === 202) {
          await until((await response.json()).url, mine);
        } else if (response.status === 400 || response.status === 429) {
          note((await response.json()).error);
        } else if (!response.redirected) {
          note("No live answer (error " + response.status + "). “Classify drawing” still works.");
        }
      } catch (error) {
        note("No live answer: digitsite could not be reached.");
      } finally {
        busy = false;
        panel.classList.remove("updating");
        if (again && mine === generation) send();
      }
    }

    return {
      changed() {
        const now = performance.now();
        if (firstChange === null) firstChange = now;
        clearTimeout(timer);
        timer = setTimeout(send, now - firstChange >= MAX_WAIT_MS ? 0 : QUIET_MS);
      },
      cleared() {
        clearTimeout(timer);
        timer = null;
        firstChange = null;
        again = false;
        generation += 1;
        show(idle);
      },
    };
  }

  function initCanvas(app) {
    const canvas = app.querySelector("#draw-canvas");
    const context = canvas.getContext("2d");
    const width = app.querySelector("#pen-width");
    const submit = app.querySelector("#draw-submit");
    const status = app.querySelector("#draw-status");
    const results = app.querySelector("#draw-results");
    const strokes = [];
    const live = initLive(app.querySelector("#live-panel"), canvas);
    let current = null;

    function point(event) {
      // The canvas keeps 280x280 pixels however large CSS shows it.
      const box = canvas.getBoundingClientRect();
      return [
        ((event.clientX - box.left) * canvas.width) / box.width,
        ((event.clientY - box.top) * canvas.height) / box.height,
      ];
    }

    function redraw() {
      context.fillStyle = "#fff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.strokeStyle = "#111";
      context.lineCap = "round";
      context.lineJoin = "round";
      for (const stroke of strokes) {
        context.lineWidth = stroke.width;
        context.beginPath();
        context.moveTo(stroke.points[0][0], stroke.points[0][1]);
        for (const [x, y] of stroke.points) context.lineTo(x, y);
        context.stroke();
      }
      submit.disabled = strokes.length === 0;
    }

    canvas.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      try {
        canvas.setPointerCapture(event.pointerId);  // keep the stroke when the pointer leaves the canvas
      } catch (error) {
        // A pointer that is already gone cannot be captured; the stroke still draws.
      }
      current = {width: Number(width.value), points: [point(event)]};
      strokes.push(current);
      redraw();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!current) return;
      const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      for (const move of moves.length ? moves : [event]) current.points.push(point(move));
      redraw();
      live.changed();
    });
    for (const end of ["pointerup", "pointercancel", "lostpointercapture"]) {
      canvas.addEventListener(end, () => {
        if (current) live.changed();
        current = null;
      });
    }
    app.querySelector("#draw-undo").addEventListener("click", () => {
      strokes.pop();
      redraw();
      if (strokes.length) live.changed();
      else live.cleared();
    });
    // A new choice of what the drawing shows asks for a new live answer.
    for (const choice of app.querySelectorAll('input[name="reading"]')) {
      choice.addEventListener("change", () => {
        if (strokes.length) live.changed();
      });
    }
    app.querySelector("#draw-clear").addEventListener("click", () => {
      strokes.length = 0;
      redraw();
      live.cleared();
      say(status, "");
    });
    submit.addEventListener("click", () => {
      submit.disabled = true;
      canvas.toBlob(async (blob) => {
        await uploadPicture(app.dataset.uploadUrl, blob, stamped("drawing", "png"), results, status);
        submit.disabled = strokes.length === 0;
      }, "image/png");
    });
    redraw();
  }

  const CAMERA_ERRORS = {
    NotAllowedError:
      "Camera permission was refused. Allow the camera for this site in your browser's settings, or upload a photo instead.",
    SecurityError: "The browser does not allow the camera on this page. Upload a photo instead.",
    NotFoundError: "No camera was found on this device. Upload a photo instead.",
    OverconstrainedError: "No camera was found on this device. Upload a photo instead.",
    NotReadableError: "The camera is busy in another application. Close it there and try again.",
  };

  function initCamera(root) {
    const url = root.dataset.uploadUrl;
    const status = root.querySelector("#camera-status");
    const results = document.getElementById("gallery");
    const panel = root.querySelector("#camera-panel");
    const video = root.querySelector("#camera-video");
    const phoneInput = root.querySelector("#camera-input");
    let stream = null;

    function stop() {
      if (stream) stream.getTracks().forEach((track) => track.stop());
      stream = null;
      video.srcObject = null;
      panel.hidden = true;
    }

    phoneInput.addEventListener("change", async () => {
      for (const file of phoneInput.files) await uploadPicture(url, file, file.name, results, status);
      phoneInput.value = "";
    });

    root.querySelector("#camera-open").addEventListener("click", async () => {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        say(status, "This browser cannot use a camera on this page (it needs HTTPS). Upload a photo instead.", "error");
        return;
      }
      say(status, "Starting the camera…");
      try {
        stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}, audio: false});
      } catch (error) {
        say(status, CAMERA_ERRORS[error.name] || "The camera could not be started (" + error.name + ").", "error");
        return;
      }
      video.srcObject = stream;
      panel.hidden = false;
      await video.play();
      say(status, "Hold the digit in the frame, then press “Capture”.");
      root.querySelector("#camera-capture").focus();
    });

    root.querySelector("#camera-capture").addEventListener("click", () => {
      if (!stream || !video.videoWidth) return;
      const frame = document.createElement("canvas");
      frame.width = video.videoWidth;
      frame.height = video.videoHeight;
      frame.getContext("2d").drawImage(video, 0, 0);
      frame.toBlob((blob) => uploadPicture(url, blob, stamped("photo", "jpg"), results, status), "image/jpeg", 0.92);
    });
    root.querySelector("#camera-close").addEventListener("click", () => {
      stop();
      say(status, "");
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const app = document.getElementById("draw-app");
    if (app) initCanvas(app);
    const camera = document.getElementById("camera");
    if (camera) initCamera(camera);
  });
})();
