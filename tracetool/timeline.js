// ktstr trace timeline: zoom, pan and hover for the inline SVG above.
// Screen x of a time-unit x is labelW + tx + k*x; the plot group is
// scaled horizontally by k (marks keep their width: non-scaling stroke).
(function () {
  "use strict";
  var svg = document.getElementById("tl");
  var plot = document.getElementById("plot");
  var axis = document.getElementById("axis");
  var tip = document.getElementById("tip");
  var cursor = document.getElementById("cursor");
  var NS = "http://www.w3.org/2000/svg";
  var L = +svg.dataset.labelw, W = +svg.dataset.plotw, END = +svg.dataset.endns, AH = +svg.dataset.axish;
  var H = +svg.getAttribute("height");
  var k = 1, tx = 0, kmax = Math.max(1, END / W * 8);
  var plabels = Array.prototype.slice.call(document.querySelectorAll("#plabels .pl"));

  function fmt(ns, step) {
    var d = Math.max(0, Math.min(9, Math.ceil(-Math.log10(step / 1e9))));
    return (ns / 1e9).toFixed(d) + "s";
  }
  function drawAxis() {
    while (axis.firstChild) axis.removeChild(axis.firstChild);
    var t0 = (-tx / k) * END / W, t1 = ((W - tx) / k) * END / W;
    var raw = (t1 - t0) / 8, p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
    var step = p;
    [1, 2, 5, 10].some(function (m) { step = m * p; return step >= raw; });
    for (var i = 0, t = Math.ceil(t0 / step) * step; t <= t1 && i < 40; t += step, i++) {
      var x = L + tx + k * t * W / END;
      var ln = document.createElementNS(NS, "line");
      ln.setAttribute("class", "tick");
      ln.setAttribute("x1", x); ln.setAttribute("x2", x);
      ln.setAttribute("y1", AH - 6); ln.setAttribute("y2", H - 8);
      axis.appendChild(ln);
      var tl = document.createElementNS(NS, "text");
      tl.setAttribute("class", "tl");
      tl.setAttribute("x", x + 2); tl.setAttribute("y", AH - 10);
      tl.textContent = fmt(t, step);
      axis.appendChild(tl);
    }
  }
  function placeLabels() {
    plabels.forEach(function (el) {
      var x0 = L + tx + k * +el.dataset.x0, x1 = L + tx + k * +el.dataset.x1;
      var a = Math.max(x0, L), b = Math.min(x1, L + W);
      el.setAttribute("x", a + 3);
      el.style.display = b - a > 40 ? "" : "none";
    });
  }
  function apply() {
    k = Math.max(1, Math.min(k, kmax));
    tx = Math.min(0, Math.max(tx, W - W * k));
    plot.setAttribute("transform", "translate(" + (L + tx) + ",0) scale(" + k + ",1)");
    drawAxis();
    placeLabels();
    status();
  }
  function plotX(ev) {
    var r = svg.getBoundingClientRect();
    return (ev.clientX - r.left) * (+svg.getAttribute("width") / r.width) - L;
  }
  function zoomAt(px, f) {
    var x = (px - tx) / k;
    k *= f;
    k = Math.max(1, Math.min(k, kmax));
    tx = px - x * k;
    apply();
  }
  svg.addEventListener("wheel", function (ev) {
    var px = plotX(ev);
    if (px < 0 || px > W) return;
    ev.preventDefault();
    zoomAt(px, ev.deltaY < 0 ? 1.25 : 0.8);
  }, { passive: false });
  var drag = null;
  svg.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, tx: tx }; });
  window.addEventListener("mouseup", function () { drag = null; });
  svg.addEventListener("dblclick", function () { k = 1; tx = 0; apply(); });
  svg.addEventListener("mousemove", function (ev) {
    if (drag) {
      var r = svg.getBoundingClientRect();
      tx = drag.tx + (ev.clientX - drag.x) * (+svg.getAttribute("width") / r.width);
      apply();
    }
    var px = plotX(ev);
    if (px >= 0 && px <= W) cursor.textContent = "t = " + fmt(((px - tx) / k) * END / W, END / W / k);
    var d = ev.target && ev.target.getAttribute && ev.target.getAttribute("data-d");
    if (d) {
      tip.textContent = d;
      tip.hidden = false;
      tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - 320) + "px";
      tip.style.top = ev.clientY + 14 + "px";
    } else {
      tip.hidden = true;
    }
  });
  svg.addEventListener("mouseleave", function () { tip.hidden = true; });
  document.getElementById("zin").addEventListener("click", function () { zoomAt(W / 2, 2); });
  document.getElementById("zout").addEventListener("click", function () { zoomAt(W / 2, 0.5); });
  document.getElementById("zreset").addEventListener("click", function () { k = 1; tx = 0; apply(); });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "+" || ev.key === "=") zoomAt(W / 2, 2);
    else if (ev.key === "-") zoomAt(W / 2, 0.5);
    else if (ev.key === "0") { k = 1; tx = 0; apply(); }
  });

  // What the page shows, counted from the page itself: the lanes, the
  // frames (a mark each, or a density band's count) and the markers.
  var lanes = document.querySelectorAll("#plot g.lane").length;
  var marks = document.querySelectorAll("#plot g.lane line.f").length;
  var banded = 0;
  document.querySelectorAll("#plot g.lane rect.d").forEach(function (r) { banded += +r.dataset.n; });
  var markers = document.querySelectorAll("#markers line.marker").length;
  var st = document.getElementById("status");
  st.dataset.lanes = lanes;
  st.dataset.frames = marks + banded;
  st.dataset.marks = marks;
  st.dataset.markers = markers;
  function status() {
    st.textContent = "Showing " + (marks + banded) + " frames (" + marks + " as marks, " + banded +
      " in density bands) in " + lanes + " lanes, " + markers + " markers; zoom ×" + k.toFixed(k < 10 ? 2 : 0) + ".";
  }
  apply();

  // #A-B (seconds) opens the page zoomed to that span, e.g. #3.0-3.5.
  var m = /^#([0-9.]+)-([0-9.]+)/.exec(location.hash);
  if (m && +m[2] > +m[1]) {
    var a = +m[1] * 1e9 * W / END, b = +m[2] * 1e9 * W / END;
    k = W / (b - a);
    tx = -a * k;
    apply();
  }
  // #selftest: hover the first frame and zoom in once, and say what
  // happened in #status's data (the browser test reads it).
  if (/selftest/.test(location.hash)) {
    var first = document.querySelector("#plot g.lane line.f, #plot g.lane rect.d");
    if (first) {
      var r = first.getBoundingClientRect();
      first.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: r.left + 1, clientY: r.top + 1 }));
      st.dataset.tip = tip.hidden ? "" : tip.textContent;
    }
    zoomAt(W / 2, 4);
    st.dataset.zoom = k;
  }
  st.dataset.ready = "1";
})();
