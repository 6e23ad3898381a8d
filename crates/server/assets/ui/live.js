// Follows a running job's output on its page (Server-Sent Events from the server, no polling):
// an enhancement. Without this script the page shows the output so far; reloading shows more.
// Text is added as text nodes, never as HTML.
(function () {
  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) return;
  var note = document.getElementById("live-state");
  var src = new EventSource(live.getAttribute("data-live"));
  function say(text) { if (note) note.textContent = text; }
  function append(id, e) {
    var pre = document.getElementById(id);
    if (!pre) return;
    var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    var empty = pre.querySelector(".empty");
    if (empty) empty.remove();
    pre.appendChild(document.createTextNode(JSON.parse(e.data)));
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }
  function status(e) {
    var s = JSON.parse(e.data).status;
    var el = document.getElementById("job-status");
    if (el) { el.textContent = s; el.className = "status-" + s; }
    return s;
  }
  src.addEventListener("stdout", function (e) { append("stdout", e); });
  src.addEventListener("stderr", function (e) { append("stderr", e); });
  src.addEventListener("status", status);
  src.addEventListener("end", function (e) {
    src.close();
    say("The job has ended (" + status(e) + "). Reload the page for its events and result files.");
  });
  src.addEventListener("open", function () { say("Following the output live."); });
  src.addEventListener("error", function () {
    if (src.readyState === EventSource.CLOSED) say("Live output stopped. Reload the page to see more.");
  });
})();
