/* The upload page: files dropped anywhere, pasted, picked or given by URL go up one request each
   to the API with the session's CSRF token (the page holds no API key), with a progress bar, a
   cancel button and the links to copy. Files above the page's resumable threshold go up in tus
   chunks (the tus client is loaded only then). Without this script the form posts to /upload. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var nonce = document.currentScript ? document.currentScript.nonce : "";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.content : "";
  var endpoint = form.dataset.endpoint;
  var limit = Number(form.dataset.limit) || Infinity;
  var resumable = Number(form.dataset.resumable) || 0;
  var queue = document.getElementById("queue");
  var rows = document.getElementById("rows");
  var said = document.getElementById("progress-status");
  var copied = document.getElementById("copy-status");
  var overlay = document.getElementById("drop-overlay");
  var picker = document.getElementById("files");
  var urlField = document.getElementById("url");
  var tusLoading = null;

  function say(text) { said.textContent = text; }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs) node.setAttribute(name, attrs[name]);
    if (text) node.textContent = text;
    return node;
  }

  function size(bytes) {
    var units = ["B", "KB", "MB", "GB"], i = 0;
    while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i++; }
    return (i ? bytes.toFixed(1) : String(Math.round(bytes))) + " " + units[i];
  }

  /* The options as they are when a file starts: a form's fields but the files and the URL. */
  function options() {
    var data = new FormData(form);
    data.delete("source");
    data.delete("url");
    data.delete("csrf_token");
    return data;
  }

  /* One row of the list: name, progress, percent and speed, Cancel; later the links. */
  function Row(name, total) {
    this.name = name;
    this.total = total;
    this.node = el("li", {"class": "row"});
    this.thumb = el("img", {"class": "thumb", alt: ""});
    this.thumb.hidden = true;
    var box = el("div", {});
    this.title = el("p", {"class": "name"}, name);
    this.bar = el("progress", {max: "100", value: "0", "aria-label": "Upload of " + name});
    this.state = el("p", {"class": "state"}, "Waiting");
    this.tools = el("div", {"class": "tools"});
    this.cancel = el("button", {type: "button", "aria-label": "Cancel " + name}, "Cancel");
    this.tools.appendChild(this.cancel);
    box.append(this.title, this.bar, this.state, this.tools);
    this.node.append(el("div", {"class": "slot"}), box);
    this.node.firstChild.appendChild(this.thumb);
    rows.prepend(this.node);
    queue.hidden = false;
    this.started = Date.now();
    this.lastTime = this.started;
    this.lastBytes = 0;
    this.speed = 0;
    this.told = 0;
  }

  Row.prototype.progress = function (loaded, total) {
    total = total || this.total || 1;
    var percent = Math.min(100, Math.floor(loaded * 100 / total));
    var now = Date.now();
    if (now - this.lastTime >= 400) {
      var rate = (loaded - this.lastBytes) * 1000 / (now - this.lastTime);
      this.speed = this.speed ? this.speed * 0.6 + rate * 0.4 : rate;
      this.lastTime = now;
      this.lastBytes = loaded;
    }
    this.bar.value = percent;
    this.state.textContent = percent + "%" + (this.speed ? " · " + size(this.speed) + "/s" : "")
      + " · " + size(loaded) + " of " + size(total);
    // a screen reader hears a quarter at a time, not every percent
    var quarter = Math.floor(percent / 25) * 25;
    if (quarter > this.told && quarter < 100) {
      this.told = quarter;
      say(this.name + ": " + quarter + "%");
    }
  };

  Row.prototype.sent = function () {
    this.bar.value = this.bar.max;
    this.state.textContent = "Processing…";
    this.cancel.remove();  // the file is in: the server stores it whatever happens here now
  };

  Row.prototype.fail = function (message) {
    this.node.classList.add("failed");
    this.bar.hidden = true;
    this.state.textContent = message;
    this.cancel.remove();
    say(this.name + ": " + message);
  };

  Row.prototype.done = function (image) {
    var title = image.title || image.display_title || this.name;
    this.bar.hidden = true;
    this.cancel.remove();
    this.title.textContent = "";
    this.title.appendChild(el("a", {href: image.url_viewer}, title));
    this.state.textContent = "Uploaded · " + size(image.size || this.total);
    var shown = (image.thumb && image.thumb.url) || image.url_frame || "";
    if (shown) {
      this.thumb.src = shown;
      this.thumb.alt = title;
      this.thumb.hidden = false;
    }
    var codes = shareCodes(image, title);
    for (var i = 0; i < codes.length; i++) this.tools.appendChild(copyButton(codes[i][0], codes[i][1], title));
    if (image.delete_url) this.tools.appendChild(copyButton("Delete link", image.delete_url, title));
    say(this.name + ": uploaded");
  };

  function markdownText(text) { return text.replace(/([\\\[\]])/g, "\\$1"); }
  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}[c];
    });
  }

  /* The same texts the viewer page offers (imgz/embed.py share_codes). */
  function shareCodes(image, title) {
    var url = image.url, viewer = image.url_viewer;
    var codes = [["Direct link", url], ["Viewer", viewer]];
    if (/^video\//.test(image.mime || "")) {
      var poster = image.url_frame || (image.medium && image.medium.url) || url;
      codes.push(["Markdown", "[![" + markdownText(title) + "](" + poster + ")](" + viewer + ")"],
        ["HTML", '<video controls preload="metadata" width="' + image.width + '" height="' + image.height + '"'
          + (image.url_frame ? ' poster="' + escapeHtml(image.url_frame) + '"' : "")
          + '><source src="' + escapeHtml(url) + '" type="' + escapeHtml(image.mime) + '"></video>'],
        ["BBCode", "[url=" + viewer + "][img]" + poster + "[/img][/url]"]);
    } else {
      codes.push(["Markdown", "![" + markdownText(title) + "](" + url + ")"],
        ["HTML", '<img src="' + escapeHtml(url) + '" alt="' + escapeHtml(title) + '">'],
        ["BBCode", "[img]" + url + "[/img]"]);
    }
    return codes;
  }

  function copyButton(label, text, title) {
    var button = el("button", {type: "button", "aria-label": "Copy " + label + " of " + title,
                               "data-copy": text}, label);
    button.addEventListener("click", function () {
      function done(ok) {
        copied.textContent = "";
        copied.textContent = ok ? "Copied" : "Copy failed: select the text and press Ctrl+C";
        if (ok) {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = label; }, 1600);
        }
      }
      function fallback() {
        var area = el("textarea", {"class": "visually-hidden", readonly: ""});
        area.value = text;
        document.body.appendChild(area);
        area.select();
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
        area.remove();
        button.focus();
        done(ok);
      }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
      } else {
        fallback();
      }
    });
    return button;
  }

  function errorOf(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (err) { /* not JSON: a proxy's page */ }
    return xhr.status ? "Failed (" + xhr.status + ")" : "Failed: the connection was lost";
  }

  /* Three at a time: each gets a fair share of the line, and the server's queue is not
     filled by one page. A row waits ("Waiting") until its turn; Cancel works then too. */
  var waiting = [], active = 0, ACTIVE = 3;

  function enqueue(row, start) {
    row.start = start;
    waiting.push(row);
    row.cancel.addEventListener("click", function () {
      var at = waiting.indexOf(row);
      if (at >= 0) {
        waiting.splice(at, 1);
        row.fail("Cancelled");
      } else if (row.stop) {
        row.stop();
      }
    });
    pump();
  }

  function pump() {
    while (active < ACTIVE && waiting.length) {
      var row = waiting.shift();
      active++;
      row.state.textContent = "Starting…";
      say("Uploading " + row.name);
      row.start(function () { active--; pump(); });
    }
  }

  /* Chevereto's answer of the API or of the finishing call: the links, or the error's words. */
  function answered(row, xhr) {
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
    if (xhr.status === 200 && body && body.image) row.done(body.image);
    else row.fail(errorOf(xhr));
  }

  /* One file or URL up to the API. */
  function send(source, name, total) {
    var row = new Row(name, total);
    if (total > limit) {
      row.fail("Too large: at most " + size(limit) + " a file");
      return;
    }
    enqueue(row, function (finished) {
      var data = options();
      if (typeof source === "string") data.append("source", source);
      else data.append("source", source, name);
      var xhr = new XMLHttpRequest();
      row.stop = function () { xhr.abort(); };
      xhr.upload.onprogress = function (event) {
        row.progress(event.loaded, event.lengthComputable ? event.total : total);
      };
      xhr.upload.onload = function () { row.sent(); };
      xhr.onload = function () { answered(row, xhr); };
      xhr.onerror = function () { row.fail(errorOf(xhr)); };
      xhr.onabort = function () { row.fail("Cancelled"); };
      xhr.onloadend = finished;
      xhr.open("POST", endpoint);
      xhr.setRequestHeader("Accept", "application/json");
      if (token) xhr.setRequestHeader("X-CSRFToken", token);
      xhr.send(data);
    });
  }

  /* The tus client, loaded once, when a file first needs it. */
  function loadTus() {
    if (window.tus) return Promise.resolve(window.tus);
    if (!tusLoading) {
      tusLoading = new Promise(function (resolve, reject) {
        var script = el("script", {src: form.dataset.tusClient});
        script.nonce = nonce;
        script.onload = function () { resolve(window.tus); };
        script.onerror = function () { tusLoading = null; reject(new Error("the resumable client did not load")); };
        document.head.appendChild(script);
      });
    }
    return tusLoading;
  }

  /* What a failed tus request says to people: the server's words, else what went wrong. */
  function tusError(err) {
    var answer = err && err.originalResponse;
    if (answer) {
      try {
        var body = JSON.parse(answer.getBody());
        if (body && body.error && body.error.message) return body.error.message;
      } catch (e) { /* not JSON: a proxy's page */ }
      if (answer.getStatus()) return "Failed (" + answer.getStatus() + ")";
    }
    if (err && err.originalRequest) return "Failed: the connection was lost";
    return "Failed: " + (err && err.message || err);
  }

  /* A large file in resumable chunks, then the finishing call that stores it (Chevereto's JSON). */
  function sendResumable(file) {
    var row = new Row(file.name, file.size);
    if (file.size > limit) {
      row.fail("Too large: at most " + size(limit) + " a file");
      return;
    }
    enqueue(row, function (finished) {
      var upload = null, over = false;
      function end(message) {
        if (message) row.fail(message);
        if (!over) { over = true; finished(); }
      }
      row.stop = function () {
        if (upload) upload.abort(true);
        end("Cancelled");
      };
      loadTus().then(function (tus) {
        if (over) return;
        upload = new tus.Upload(file, {
          endpoint: form.dataset.tusEndpoint,
          headers: {"X-CSRFToken": token},
          metadata: {filename: file.name, filetype: file.type},
          chunkSize: 8 * 1024 * 1024,
          retryDelays: [0, 1000, 3000, 5000, 10000],
          removeFingerprintOnSuccess: true,
          onProgress: function (loaded, total) { row.progress(loaded, total); },
          onError: function (err) {
            // the tus client does not try again offline (a phone between networks): wait for
            // the network, then go on from where the server stopped
            if (navigator.onLine === false && !over) {
              row.state.textContent = "Waiting for the network…";
              say(row.name + ": waiting for the network");
              window.addEventListener("online", function () { if (!over) upload.start(); }, {once: true});
              return;
            }
            end(tusError(err));
          },
          onSuccess: function () {
            row.sent();
            var xhr = new XMLHttpRequest();
            xhr.open("POST", upload.url + "/finish");
            xhr.setRequestHeader("Accept", "application/json");
            xhr.setRequestHeader("X-CSRFToken", token);
            xhr.onload = function () { answered(row, xhr); end(); };
            xhr.onerror = function () { end(errorOf(xhr)); };
            xhr.send(new URLSearchParams(options()));
          }
        });
        // a file sent before from this browser goes on where it stopped
        upload.findPreviousUploads().then(function (previous) {
          if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
          if (!over) upload.start();
        });
      }, function (err) { end("Failed: " + err.message); });
    });
  }

  function sendFiles(files) {
    for (var i = 0; i < files.length; i++) {
      var file = files[i];
      if (resumable && file.size > resumable) sendResumable(file);
      else send(file, file.name || "file", file.size);
    }
  }

  picker.addEventListener("change", function () {
    sendFiles(picker.files);
    picker.value = "";
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var url = urlField ? urlField.value.trim() : "";
    if (url) {
      send(url, url, 0);
      urlField.value = "";
    } else if (picker.files.length) {
      sendFiles(picker.files);
      picker.value = "";
    } else {
      say("Choose files first, drop them here or paste one.");
      picker.focus();
    }
  });

  /* Drop anywhere: the overlay shows while files are dragged over the page. */
  var depth = 0;
  function hasFiles(event) {
    var types = event.dataTransfer ? event.dataTransfer.types : [];
    return Array.prototype.indexOf.call(types, "Files") >= 0;
  }
  document.addEventListener("dragenter", function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth++;
    overlay.hidden = false;
  });
  document.addEventListener("dragover", function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", function (event) {
    if (!hasFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  document.addEventListener("drop", function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    overlay.hidden = true;
    sendFiles(event.dataTransfer.files);
  });

  /* Paste: files on the clipboard (a screenshot) are uploaded; text pastes as usual. */
  function stamp() {
    var d = new Date(), p = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + p(d.getMonth() + 1) + p(d.getDate()) + "-" + p(d.getHours()) + p(d.getMinutes()) + p(d.getSeconds());
  }
  document.addEventListener("paste", function (event) {
    var data = event.clipboardData;
    if (!data || !data.files || !data.files.length) return;
    event.preventDefault();
    var files = [];
    for (var i = 0; i < data.files.length; i++) {
      var file = data.files[i];
      // a screenshot arrives as "image.png": give it a name that tells one from the next
      if (!file.name || file.name === "image.png") {
        var ext = (file.type.split("/")[1] || "png").replace("jpeg", "jpg");
        file = new File([file], "screenshot-" + stamp() + (i ? "-" + i : "") + "." + ext, {type: file.type});
      }
      files.push(file);
    }
    sendFiles(files);
  });
})();
