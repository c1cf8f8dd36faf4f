//! The timeline page: the run's items as JSON in the page, drawn by its own script as SVG.
//! Nothing is fetched: a saved page opens anywhere, offline.

use super::{Item, Lane, What};

/// What the page says about the run besides its items.
pub struct Page<'a> {
    pub title: &'a str,
    /// The failure text, if it failed.
    pub failure: Option<&'a str>,
    /// What the seed drew besides its faults (chaos's swarm).
    pub setup: Option<&'a str>,
    /// Consensus nodes (lanes n0..), then external nodes (x0..).
    pub nodes: usize,
    pub externals: usize,
    /// Redundancy group members (m0..).
    pub members: usize,
    /// The run's last simulated second.
    pub end_secs: f64,
    pub replay: &'a str,
}

/// `s` as a JSON string that is also safe inside a `<script>` element.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` safe as HTML text.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn lane_code(lane: Lane) -> i64 {
    match lane {
        Lane::Node(n) => n as i64,
        Lane::Cluster => -1,
        Lane::L1 => -2,
        Lane::Rounds => -3,
    }
}

fn value(what: What) -> u64 {
    match what {
        What::Leader(t) => t,
        What::Height(h) => h,
        What::Snapshot(missing) => missing,
        What::Signed { round, .. } => round,
        _ => 0,
    }
}

/// Who an item is by, where the lane does not say (the member that signed a round).
fn by(what: What) -> Option<u64> {
    match what {
        What::Signed { member, .. } => Some(member),
        _ => None,
    }
}

/// The page for `items`.
pub fn render(page: &Page<'_>, items: &[Item]) -> String {
    let mut data = String::from("{\"items\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(&format!(
            "[{:.3},{},{},{},{}{}]",
            it.at_secs,
            lane_code(it.lane),
            json_str(it.what.name()),
            value(it.what),
            json_str(&it.text),
            by(it.what).map_or(String::new(), |m| format!(",{m}"))
        ));
    }
    data.push_str(&format!(
        "],\"nodes\":{},\"externals\":{},\"members\":{},\"memberBase\":{},\"end\":{:.3},\"failure\":{}}}",
        page.nodes,
        page.externals,
        page.members,
        crate::group::MEMBER_INDEX_BASE,
        page.end_secs,
        page.failure.map_or("null".to_string(), json_str)
    ));
    let verdict = match page.failure {
        Some(f) => format!(
            "<div id=\"verdict\" class=\"failed\">FAILED: {}</div>",
            html(f.lines().next().unwrap_or(""))
        ),
        None => "<div id=\"verdict\" class=\"passed\">passed</div>".to_string(),
    };
    let setup = page
        .setup
        .map(|s| format!("<div class=\"setup\">{}</div>", html(s)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head>\n\
         <body data-ready=\"0\"><header><h1>{title}</h1>{verdict}{setup}\
         <div class=\"replay\">replay: <code>{replay}</code></div>\
         <div id=\"controls\">wheel: zoom at the pointer &middot; drag: pan &middot; \
         <button id=\"reset\" type=\"button\">whole run</button> <span id=\"range\"></span></div>\
         <div id=\"legend\"></div></header>\n\
         <div id=\"chart\"></div><div id=\"details\">Hover over or click anything for its details.</div>\n\
         <script id=\"data\" type=\"application/json\">{data}</script>\n\
         <script>{SCRIPT}</script>\n</body></html>\n",
        title = html(page.title),
        replay = html(page.replay),
    )
}

const STYLE: &str = r##"
body{font:13px/1.4 system-ui,sans-serif;margin:0;background:#fafafa;color:#222}
header{padding:8px 16px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:17px;margin:0 0 4px}
#verdict{font-weight:600;margin:2px 0}.failed{color:#b00020}.passed{color:#1b7f3b}
.setup,.replay{color:#555;font-size:12px}code{background:#f0f0f0;padding:1px 4px}
#controls{margin-top:4px;color:#555}button{font:inherit}
#legend span{display:inline-block;margin:4px 12px 0 0}#legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
#chart{margin:8px 16px;background:#fff;border:1px solid #ddd;user-select:none;cursor:grab}
#details{margin:0 16px 16px;padding:8px;background:#fff;border:1px solid #ddd;min-height:1.4em;white-space:pre-wrap}
.lane-label{font-size:12px;fill:#333}.tick{font-size:10px;fill:#777}
"##;

const SCRIPT: &str = r##"
"use strict";
window.addEventListener("error", function (e) { document.body.dataset.error = String(e.message); });
(function () {
  var D = JSON.parse(document.getElementById("data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = {leader: "#f2c14e", down: "#cfcfcf", faultOn: "#f6b26b", l1down: "#e06666",
    height: "#3c78d8", snapshot: "#1c4587", backfill: "#45818e", sealed: "#999", committed: "#38a169",
    notCommitted: "#d32f2f", fault: "#d32f2f", crash: "#b00020", restart: "#38a169", claim: "#8e44ad",
    stepped: "#8e44ad", reverted: "#6d4c41", heal: "#38a169", violation: "#b00020", gap: "#ea9999"};
  var lanes = [{code: "all", name: "canonical height"}, {code: -1, name: "network, disks"}];
  for (var n = 0; n < D.nodes; n++) lanes.push({code: n, name: "n" + n});
  for (var x = 0; x < D.externals; x++) lanes.push({code: D.nodes + x, name: "x" + x + " (external)"});
  for (var m = 0; m < D.members; m++) lanes.push({code: D.memberBase + m, name: "m" + m + " (member)"});
  if (D.members > 0) lanes.push({code: -3, name: "rounds: who signed"});
  lanes.push({code: -2, name: "L1 batches"});
  var LABEL = 130, LANE = 46, TOP = 24;
  var end = Math.max(D.end, 0.001);
  var view = {t0: 0, t1: end};
  var items = D.items.map(function (r, i) { return {t: r[0], lane: r[1], what: r[2], v: r[3], text: r[4], by: r[5], i: i}; });
  // One colour per group member on the rounds lane; a round two members signed is marked.
  var MEMBER_COLORS = ["#3c78d8", "#8e44ad", "#e69138", "#38a169", "#c2185b", "#00838f"];
  var signers = {};
  items.forEach(function (it) {
    if (it.what !== "signed") return;
    var s = signers[it.v] || (signers[it.v] = []);
    if (s.indexOf(it.by) < 0) s.push(it.by);
  });
  items.forEach(function (it) {
    if (it.what === "signed" && signers[it.v].length > 1) it.text += " (round " + it.v + " signed by m" + signers[it.v].join(" and m") + ")";
  });
  var details = document.getElementById("details");
  function say(it) { details.textContent = it.t.toFixed(3) + " s  " + laneName(it.lane) + "  " + it.text; }
  function laneName(code) {
    for (var k = 0; k < lanes.length; k++) if (lanes[k].code === code) return lanes[k].name;
    return "?";
  }
  function el(name, attrs, parent, text) {
    var e = document.createElementNS(NS, name);
    for (var a in attrs) e.setAttribute(a, attrs[a]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  // Intervals on a lane: from an opening item to the next closing one (or the end).
  function intervals(laneCode, opens, closes) {
    var out = [], from = null, label = null, item = null;
    items.forEach(function (it) {
      if (it.lane !== laneCode) return;
      if (opens(it)) { if (from === null) { from = it.t; label = it; item = it; } else if (it.what === "leader") { out.push([from, it.t, label]); from = it.t; label = it; } }
      else if (from !== null && closes(it)) { out.push([from, it.t, label]); from = null; }
    });
    if (from !== null) out.push([from, end, label]);
    return out;
  }
  function downOf(code) { return intervals(code, function (i) { return i.what === "crash"; }, function (i) { return i.what === "restart"; }); }
  function gapOf(code) { return intervals(code, function (i) { return i.what === "snapshot" && i.v > 0; }, function (i) { return i.what === "backfill"; }); }
  function leadOf(code) { return intervals(code, function (i) { return i.what === "leader"; }, function (i) { return i.what === "follower" || i.what === "crash"; }); }
  var clusterFaults = intervals(-1, function (i) { return i.what === "fault-on"; }, function (i) { return i.what === "heal"; });
  var l1Down = intervals(-2, function (i) { return i.what === "fault-on"; }, function (i) { return i.what === "heal"; });
  var maxHeight = 1;
  items.forEach(function (it) { if (it.what === "height" && it.v > maxHeight) maxHeight = it.v; });
  var legend = document.getElementById("legend");
  [["leading", COLORS.leader], ["down", COLORS.down], ["network or disk faults", COLORS.faultOn], ["L1 down", COLORS.l1down],
   ["chain height", COLORS.height], ["snapshot", COLORS.snapshot], ["blocks missing below a snapshot", COLORS.gap], ["backfill", COLORS.backfill], ["batch committed", COLORS.committed],
   ["fault / not committed", COLORS.fault], ["violation", COLORS.violation]].concat(
   Array.from({length: D.members}, function (_, m) { return ["round signed by m" + m, MEMBER_COLORS[m % MEMBER_COLORS.length]]; })).forEach(function (p) {
    var s = document.createElement("span"); var i = document.createElement("i"); i.style.background = p[1];
    s.appendChild(i); s.appendChild(document.createTextNode(p[0])); legend.appendChild(s);
  });
  var chart = document.getElementById("chart");
  function draw() {
    chart.textContent = "";
    var width = Math.max(chart.clientWidth, 600), plot = width - LABEL - 10;
    var height = TOP + lanes.length * LANE + 6;
    var svg = el("svg", {width: width, height: height, id: "timeline"}, chart);
    var span = view.t1 - view.t0;
    function X(t) { return LABEL + (t - view.t0) / span * plot; }
    function visible(t) { return t >= view.t0 - span * 0.01 && t <= view.t1 + span * 0.01; }
    el("rect", {x: LABEL, y: 0, width: plot, height: height, fill: "#fff"}, svg);
    var step = Math.pow(10, Math.floor(Math.log10(span / 5)));
    if (span / step > 12) step *= 5; else if (span / step > 6) step *= 2;
    for (var t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
      el("line", {x1: X(t), x2: X(t), y1: TOP - 4, y2: height, stroke: "#eee"}, svg);
      el("text", {x: X(t) + 2, y: 12, "class": "tick"}, svg, (step < 1 ? t.toFixed(2) : t.toFixed(0)) + " s");
    }
    function mark(it, y, shape, color) {
      if (!visible(it.t)) return;
      var g = el("g", {"class": "item item-" + it.what, "data-i": it.i}, svg);
      var x = X(it.t);
      if (shape === "tick") el("rect", {x: x - 1, y: y + 4, width: 2, height: LANE - 12, fill: color}, g);
      else if (shape === "diamond") el("path", {d: "M" + x + " " + (y + 8) + "l6 7 -6 7 -6 -7z", fill: color}, g);
      else if (shape === "x") el("path", {d: "M" + (x - 5) + " " + (y + 8) + "l10 12M" + (x + 5) + " " + (y + 8) + "l-10 12", stroke: color, "stroke-width": 3}, g);
      else if (shape === "tri") el("path", {d: "M" + (x - 6) + " " + (y + 22) + "l6 -12 6 12z", fill: color}, g);
      else el("circle", {cx: x, cy: y + LANE / 2, r: 4, fill: color}, g);
      el("title", {}, g, it.t.toFixed(3) + " s: " + it.text);
    }
    function band(from, to, y, color, label, h, title) {
      if (to < view.t0 || from > view.t1) return;
      var a = Math.max(X(from), LABEL), b = Math.min(X(to), LABEL + plot);
      var g = el("g", {"class": "band"}, svg);
      el("rect", {x: a, y: y + (LANE - h) / 2, width: Math.max(b - a, 1), height: h, fill: color, opacity: 0.85}, g);
      if (label && b - a > 24) el("text", {x: a + 3, y: y + LANE / 2 + 4, "class": "tick", fill: "#333"}, g, label);
      if (title) el("title", {}, g, title);
    }
    function heightLine(code, y) {
      var pts = [], last = null;
      items.forEach(function (it) {
        if (it.what !== "height") return;
        if (code !== "all" && it.lane !== code) return;
        if (code === "all" && last !== null && it.v <= last) return;
        var yy = y + LANE - 6 - (LANE - 14) * it.v / maxHeight;
        if (last !== null) pts.push(X(it.t) + "," + pts[pts.length - 1].split(",")[1]);
        pts.push(X(it.t) + "," + yy);
        last = it.v;
      });
      if (pts.length) { pts.push(X(end) + "," + pts[pts.length - 1].split(",")[1]); el("polyline", {points: pts.join(" "), fill: "none", stroke: COLORS.height, "stroke-width": 1.5, "class": "height"}, svg); }
      if (last !== null) el("text", {x: LABEL - 6, y: y + LANE - 6, "class": "tick", "text-anchor": "end"}, svg, "h " + last);
    }
    lanes.forEach(function (lane, k) {
      var y = TOP + k * LANE;
      el("line", {x1: 0, x2: width, y1: y, y2: y, stroke: "#e5e5e5"}, svg);
      el("text", {x: 6, y: y + 18, "class": "lane-label lane", "data-lane": String(lane.code)}, svg, lane.name);
      if (lane.code === "all") { heightLine("all", y); return; }
      if (lane.code === -1) {
        clusterFaults.forEach(function (iv) { band(iv[0], iv[1], y, COLORS.faultOn, "faults", 18, "from " + iv[0].toFixed(3) + " s: " + iv[2].text); });
        items.forEach(function (it) { if (it.lane !== -1) return;
          if (it.what === "heal") mark(it, y, "tri", COLORS.heal); else if (it.what === "fault" || it.what === "fault-on") mark(it, y, "tick", COLORS.fault); });
        return;
      }
      if (lane.code === -3) {
        items.forEach(function (it) { if (it.lane !== -3) return;
          var twice = signers[it.v].length > 1;
          mark(it, y, twice ? "x" : "tick", twice ? COLORS.violation : MEMBER_COLORS[it.by % MEMBER_COLORS.length]);
        });
        return;
      }
      if (lane.code === -2) {
        l1Down.forEach(function (iv) { band(iv[0], iv[1], y, COLORS.l1down, "L1 down", 18); });
        items.forEach(function (it) { if (it.lane !== -2) return;
          var c = {sealed: COLORS.sealed, committed: COLORS.committed, "not-committed": COLORS.notCommitted}[it.what] || COLORS.fault;
          mark(it, y, it.what === "sealed" ? "dot" : "tick", c); });
        return;
      }
      downOf(lane.code).forEach(function (iv) { band(iv[0], iv[1], y, COLORS.down, "down", LANE - 8, "down from " + iv[0].toFixed(3) + " s"); });
      gapOf(lane.code).forEach(function (iv) { band(iv[0], iv[1], y, COLORS.gap, "gap: " + iv[2].v + " blocks missing", 10, iv[2].text); });
      leadOf(lane.code).forEach(function (iv) { band(iv[0], iv[1], y, COLORS.leader, "T" + iv[2].v, 14, iv[2].text); });
      heightLine(lane.code, y);
      items.forEach(function (it) {
        if (it.lane !== lane.code) return;
        var m = {snapshot: ["diamond", COLORS.snapshot], backfill: ["diamond", COLORS.backfill], crash: ["x", COLORS.crash],
          restart: ["tri", COLORS.restart], fault: ["tick", COLORS.fault], claim: ["dot", COLORS.claim], "stepped-in": ["dot", COLORS.stepped],
          reverted: ["dot", COLORS.reverted], refused: ["tick", COLORS.fault], leader: ["dot", COLORS.leader]}[it.what];
        if (m) mark(it, y, m[0], m[1]);
      });
    });
    items.forEach(function (it) {
      if (it.what !== "violation") return;
      var g = el("g", {id: "violation", "class": "item", "data-i": it.i}, svg);
      var x = Math.min(Math.max(X(it.t), LABEL), LABEL + plot);
      el("line", {x1: x, x2: x, y1: TOP - 6, y2: height, stroke: COLORS.violation, "stroke-width": 2}, g);
      el("text", {x: x - 4, y: TOP - 8, "class": "tick", "text-anchor": "end", fill: COLORS.violation}, g, "violation");
      el("title", {}, g, it.t.toFixed(3) + " s: " + it.text);
    });
    document.getElementById("range").textContent = view.t0.toFixed(2) + " s to " + view.t1.toFixed(2) + " s";
    chart.dataset.lanes = String(lanes.length);
  }
  function itemAt(target) {
    var g = target.closest ? target.closest("[data-i]") : null;
    return g ? items[Number(g.getAttribute("data-i"))] : null;
  }
  chart.addEventListener("mousemove", function (e) { var it = itemAt(e.target); if (it) say(it); });
  chart.addEventListener("click", function (e) { var it = itemAt(e.target); if (it) say(it); });
  chart.addEventListener("wheel", function (e) {
    e.preventDefault();
    var r = chart.getBoundingClientRect(), plot = Math.max(chart.clientWidth, 600) - LABEL - 10;
    var at = view.t0 + (view.t1 - view.t0) * Math.min(Math.max((e.clientX - r.left - LABEL) / plot, 0), 1);
    var f = e.deltaY > 0 ? 1.25 : 0.8;
    view.t0 = Math.max(0, at - (at - view.t0) * f); view.t1 = Math.min(end, at + (view.t1 - at) * f);
    if (view.t1 - view.t0 < 0.01) view.t1 = view.t0 + 0.01;
    draw();
  }, {passive: false});
  var drag = null;
  chart.addEventListener("mousedown", function (e) { drag = {x: e.clientX, t0: view.t0, t1: view.t1}; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    var plot = Math.max(chart.clientWidth, 600) - LABEL - 10, span = drag.t1 - drag.t0;
    var dt = -(e.clientX - drag.x) / plot * span;
    dt = Math.max(-drag.t0, Math.min(end - drag.t1, dt));
    view.t0 = drag.t0 + dt; view.t1 = drag.t1 + dt; draw();
  });
  document.getElementById("reset").addEventListener("click", function () { view = {t0: 0, t1: end}; draw(); });
  window.addEventListener("resize", draw);
  draw();
  document.body.dataset.ready = "1";
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_close_the_script_or_break_the_json() {
        assert_eq!(
            json_str("a\"b\\c\n</script>"),
            "\"a\\\"b\\\\c\\n\\u003c/script\\u003e\""
        );
        assert_eq!(html("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }

    #[test]
    fn the_page_is_self_contained_and_carries_every_item() {
        let items = vec![
            Item {
                at_secs: 1.0,
                lane: Lane::Node(1),
                what: What::Crash,
                text: "crash n1 </script>".into(),
            },
            Item {
                at_secs: 2.0,
                lane: Lane::Cluster,
                what: What::Violation,
                text: "stuck".into(),
            },
        ];
        let page = Page {
            title: "chaos seed 1",
            failure: Some("liveness: stuck"),
            setup: None,
            nodes: 3,
            externals: 1,
            members: 0,
            end_secs: 3.0,
            replay: "cargo run",
        };
        let out = render(&page, &items);
        assert!(out.starts_with("<!doctype html>"));
        for far in ["http://", "https://", "src=", "href="] {
            let uses = out.matches(far).count();
            // The SVG namespace is a name, not a fetch.
            let allowed = usize::from(far == "http://");
            assert!(uses <= allowed, "{far} appears {uses} times");
        }
        assert_eq!(out.matches("</script>").count(), 2);
        assert!(out.contains("[1.000,1,\"crash\",0,\"crash n1 \\u003c/script\\u003e\"]"));
        assert!(out.contains("FAILED: liveness: stuck"));
    }
}
