// archdsl view: fold, lay out (dagre, vendored above) and draw the page data; answer clicks.
// The data comes from archdsl/tools/view/data.py; this file computes no figure itself.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const LIVE = document.body.dataset.live === "1";
  const $ = (id) => document.getElementById(id);
  const FILL = {
    input: "#e0e0e0", conv: "#cfe2f3", project: "#fce5cd", zeropad: "#fce5cd",
    maxpool: "#d9ead3", avgpool: "#d9ead3", globalavgpool: "#d9ead3", globalmaxpool: "#d9ead3",
    flatten: "#f3f3f3", dense: "#fff2cc", batchnorm: "#eeeeee", lrn: "#eeeeee",
    dropout: "#eeeeee", residual: "#f4cccc", add: "#f4cccc", concat: "#f4cccc",
  };
  const NESTED_LIMIT = 200;
  const MERGES = ["concat", "add"];
  const FROZEN = "#c9d6df", AUX = "#ead1dc", GROUP = "#dde8f3", PLAIN = "#ffffff";

  let data = null;       // the payload
  let model = null;      // derived tables for the payload
  let expanded = new Set();  // "s:NAME" scopes and "r:NAME" runs (by first scope) open
  let selected = null;       // "n:NAME" or "s:NAME" or "r:NAME"
  let zoom = 1;
  let version = 0;
  const HINT = $("details").firstElementChild.cloneNode(true);

  const fmt = (n) => n.toLocaleString("en-US");
  const short = (n) => {
    for (const [u, s] of [["G", 1e9], ["M", 1e6], ["K", 1e3]]) {
      if (n >= s) return (n / s).toFixed(u === "G" ? 2 : 1) + u;
    }
    return String(n);
  };
  const bytes = (n) => {
    for (const [u, s] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) {
      if (n >= s) return (n / s).toFixed(1) + " " + u;
    }
    return n + " B";
  };
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function sv(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const ctx = document.createElement("canvas").getContext("2d");
  function width(text, font) {
    ctx.font = font;
    return ctx.measureText(text).width;
  }
  const FONT = '12px system-ui, "DejaVu Sans", "Segoe UI", sans-serif';
  const BOLD = "600 " + FONT;
  const SMALL = '11px system-ui, "DejaVu Sans", "Segoe UI", sans-serif';
  const TINY = '10px system-ui, "DejaVu Sans", "Segoe UI", sans-serif';

  // the model: scope chains, members, runs -----------------------------------------------
  function prepare(d) {
    const m = { byName: new Map(), scopeByName: new Map(), chain: [], members: [], kids: [] };
    d.scopes.forEach((s, i) => {
      m.scopeByName.set(s.name + (s.aux ? "#aux" : ""), i);
      m.members.push([]);
      m.kids.push([]);
      if (s.parent >= 0) m.kids[s.parent].push(i);
    });
    d.nodes.forEach((n, i) => {
      m.byName.set(n.name, i);
      const chain = [];
      for (let s = n.scope; s >= 0; s = d.scopes[s].parent) {
        chain.unshift(s);
        m.members[s].push(i);
      }
      m.chain.push(chain);
    });
    m.users = d.nodes.map(() => []);
    d.nodes.forEach((n, i) => n.inputs.forEach((j) => m.users[j].push(i)));
    return m;
  }
  const scopeKey = (s) => "s:" + data.scopes[s].name + (data.scopes[s].aux ? "#aux" : "");
  const runKey = (r) => "r:" + data.scopes[data.runs[r].scopes[0]].name;

  function defaultExpanded() {
    // As `archdsl graph --collapse`: the innermost scopes and runs folded, outer ones open.
    const out = new Set();
    data.scopes.forEach((s, i) => {
      const kids = model.kids[i].filter((k) => !data.scopes[k].aux);
      if (kids.length > 0 || model.members[i].length === 1) out.add(scopeKey(i));
    });
    return out;
  }
  function allExpanded() {
    const out = new Set();
    data.scopes.forEach((s, i) => out.add(scopeKey(i)));
    data.runs.forEach((r, i) => out.add(runKey(i)));
    return out;
  }
  function unitOf(i) {
    // The box that shows node i: its outermost folded run or scope, else itself.
    if (data.nodes[i].inserted) return "n:" + data.nodes[i].name;
    for (const s of model.chain[i]) {
      const sc = data.scopes[s];
      if (sc.run !== undefined && !expanded.has(runKey(sc.run))) return runKey(sc.run);
      if (!expanded.has(scopeKey(s))) return scopeKey(s);
    }
    return "n:" + data.nodes[i].name;
  }
  function openChain(i) {
    // The open scopes around node i, outermost first, up to its box.
    const out = [];
    for (const s of model.chain[i]) {
      const sc = data.scopes[s];
      if (sc.run !== undefined && !expanded.has(runKey(sc.run))) break;
      if (!expanded.has(scopeKey(s))) break;
      out.push(s);
    }
    return out;
  }

  // units: what each box says ----------------------------------------------------------
  function groupOf(key) {
    // Node indices inside a folded scope or run, and how many repeats it stands for.
    if (key.startsWith("r:")) {
      const r = data.runs.findIndex((_, k) => runKey(k) === key);
      const scopes = data.runs[r].scopes;
      return { nodes: scopes.flatMap((s) => model.members[s]), count: scopes.length, run: r, scopes };
    }
    const s = model.scopeByName.get(key.slice(2));
    return { nodes: model.members[s], count: 1, scope: s, scopes: [s] };
  }
  function totals(nodes) {
    const t = { params: 0, trainable: 0, state: 0, macs: 0, frozen: 0, inserted: 0 };
    for (const i of nodes) {
      const n = data.nodes[i];
      t.params += n.params; t.trainable += n.trainable; t.state += n.state;
      t.macs += n.macs;
      if (n.frozen) t.frozen += 1;
      if (n.inserted) t.inserted += 1;
    }
    return t;
  }
  function boundary(nodes) {
    // The shape entering and leaving a group of nodes.
    const inside = new Set(nodes);
    let src = null, last = nodes[nodes.length - 1];
    for (const i of nodes) {
      for (const j of data.nodes[i].inputs) if (!inside.has(j) && src === null) src = j;
      if (model.users[i].some((u) => !inside.has(u))) last = i;
    }
    return { in: src === null ? null : data.nodes[src].shape, out: data.nodes[last].shape };
  }
  function opSummary(nodes) {
    const counts = new Map();
    for (const i of nodes) counts.set(data.nodes[i].op, (counts.get(data.nodes[i].op) || 0) + 1);
    return [...counts].map(([op, c]) => (c > 1 ? c + " " + op : op)).join(", ");
  }
  function wrap(text, max) {
    const out = [];
    let cur = "";
    for (const w of text.split(", ")) {
      const cand = cur ? cur + ", " + w : w;
      if (cur && cand.length > max) { out.push(cur + ","); cur = w; } else cur = cand;
    }
    if (cur) out.push(cur);
    return out;
  }
  function describeUnit(key, parentScope) {
    // Lines of text, fill and marks of a box.
    if (key.startsWith("n:")) {
      const i = model.byName.get(key.slice(2));
      const n = data.nodes[i];
      let name = n.name;
      if (parentScope >= 0 && n.scope === parentScope) {
        const p = data.scopes[parentScope].name + ".";
        if (name.startsWith(p)) name = name.slice(p.length);
      }
      const what = n.attrs && n.attrs !== n.shape ? n.op + " " + n.attrs : n.op;
      const tags = [];
      if (n.inserted) tags.push("inserted");
      if (n.frozen) tags.push("frozen");
      if (n.output) tags.push("output");
      const lines = [{ text: name, cls: "name", font: BOLD }];
      const auto = new RegExp("^" + n.op + "(_\\d+)?$").test(n.name.split(".").pop());
      if (what !== n.op || !auto) lines.push({ text: what, font: FONT });
      lines.push({ text: n.shape + (tags.length ? " · " + tags.join(", ") : ""), cls: "muted", font: SMALL });
      let fill = FILL[n.op] || PLAIN;
      if (n.aux !== null) fill = AUX;
      if (n.frozen) fill = FROZEN;
      return { lines, fill, cls: [n.inserted ? "inserted" : "", n.aux !== null ? "aux" : "", n.output ? "output" : ""], toggle: null };
    }
    const g = groupOf(key);
    const first = data.scopes[g.scopes[0]];
    // Inserted projections are drawn on their own, beside the box: not counted in it.
    const folded = g.nodes.filter((i) => !data.nodes[i].inserted);
    const per = folded.slice(0, folded.length / g.count);
    const t = totals(folded);
    const b = boundary(g.nodes);
    let title = first.name;
    if (g.count > 1) title = first.name + " … " + data.scopes[g.scopes[g.count - 1]].name + "  ×" + g.count;
    const lines = [{ text: title, cls: "name", font: BOLD }];
    for (const w of wrap(opSummary(per), 44)) lines.push({ text: w, font: FONT });
    let figs = per.length + " layers";
    if (t.params) figs += " · " + fmt(t.params / g.count) + " params";
    if (g.count > 1) figs += " each";
    lines.push({ text: figs, font: FONT });
    const tags = [];
    if (t.frozen === folded.length) tags.push("frozen"); else if (t.frozen) tags.push("partly frozen");
    if (first.aux) tags.push("loss weight " + first.weight);
    if (g.nodes.some((i) => data.nodes[i].output)) tags.push("output");
    const shapes = b.in !== null && b.in !== b.out ? b.in + " → " + b.out : b.out;
    lines.push({ text: shapes + (tags.length ? " · " + tags.join(", ") : ""), cls: "muted", font: SMALL });
    let fill = first.aux ? AUX : GROUP;
    if (t.frozen === folded.length) fill = FROZEN;
    return { lines, fill, cls: ["group", first.aux ? "aux" : "", tags.includes("output") ? "output" : ""], toggle: "+" };
  }

  // layout and drawing -----------------------------------------------------------------
  function build() {
    const g = new dagre.graphlib.Graph({ compound: true });
    g.setGraph({ rankdir: "TB", nodesep: 26, ranksep: 26, edgesep: 14, marginx: 40, marginy: 40 });
    g.setDefaultEdgeLabel(() => ({}));
    const units = new Map();
    const chains = new Map();
    data.nodes.forEach((n, i) => {
      const key = unitOf(i);
      if (units.has(key)) return;
      const chain = openChain(i);
      const parent = chain.length ? chain[chain.length - 1] : -1;
      const d = describeUnit(key, parent);
      const w = Math.max(...d.lines.map((l) => width(l.text, l.font))) + 24 + (d.toggle ? 18 : 0);
      const h = d.lines.length * 16 + 10;
      units.set(key, d);
      chains.set(key, chain);
      g.setNode(key, { width: w, height: h, unit: d });
    });
    // dagre's compound layout keeps frames apart but costs 3x the time; past
    // NESTED_LIMIT boxes (ResNet-152 expanded) frames are drawn around their boxes instead.
    const nested = units.size <= NESTED_LIMIT;
    const clusters = new Set();
    if (nested) {
      for (const [key, chain] of chains) {
        let child = key;
        for (let k = chain.length - 1; k >= 0; k--) {
          const c = "c:" + scopeKey(chain[k]);
          if (!clusters.has(c)) {
            clusters.add(c);
            g.setNode(c, { cluster: chain[k] });
          }
          g.setParent(child, c);
          if (g.parent(c) !== undefined) break;
          child = c;
        }
      }
    }
    const seen = new Set();
    data.nodes.forEach((n, i) => {
      const to = unitOf(i);
      n.inputs.forEach((j, pos) => {
        const from = unitOf(j);
        if (from === to || seen.has(from + "\u0000" + to)) return;
        seen.add(from + "\u0000" + to);
        const src = data.nodes[j];
        let cls = "";
        if (n.op === "residual" && pos === 1) cls = src.inserted ? "inserted" : "shortcut";
        else if (src.inserted) cls = "inserted";
        else if (n.aux !== null && src.aux === null) cls = "aux";
        if (n.inputs.length > 1 && MERGES.includes(n.op)) {
          // No label into a merge: dagre would add a label node per branch and order them
          // freely, crossing the branches; each branch's box already shows its shape.
          g.setEdge(from, to, { cls });
        } else {
          g.setEdge(from, to, { label: src.shape, width: width(src.shape, TINY) + 4, height: 12, labelpos: "r", labeloffset: 4, cls });
        }
      });
    });
    dagre.layout(g, { constraints: branchOrder(g) });
    return { g, frames: nested ? nestedFrames(g) : drawnFrames(g, chains) };
  }
  function branchOrder(g) {
    // Keep the branches of a concat or add left to right in the spec's order: dagre
    // places each box of a branch left of the boxes of the next branch on its rank.
    const out = [];
    const seen = new Set();
    data.nodes.forEach((n) => {
      if (n.inputs.length < 2 || !MERGES.includes(n.op)) return;
      const prefix = n.name + ".";
      const branches = [];
      for (const j of n.inputs) {
        const name = data.nodes[j].name;
        if (!name.startsWith(prefix)) continue;
        const branch = prefix + name.slice(prefix.length).split(".")[0] + ".";
        const units = new Set();
        for (let k = 0; k < model.byName.get(n.name); k++) {
          if (data.nodes[k].name.startsWith(branch)) units.add(unitOf(k));
        }
        branches.push([...units].filter((u) => g.hasNode(u)));
      }
      // Box k of a branch left of box k of the next, counted from the top and from the
      // bottom: boxes likely to share a rank, in linear number (all pairs cost seconds).
      const pair = (left, right) => {
        const key = left + "\u0000" + right;
        if (left !== right && !seen.has(key)) {
          seen.add(key);
          out.push({ left, right });
        }
      };
      for (let b = 0; b + 1 < branches.length; b++) {
        const [x, y] = [branches[b], branches[b + 1]];
        for (let k = 0; k < Math.min(x.length, y.length); k++) {
          pair(x[k], y[k]);
          pair(x[x.length - 1 - k], y[y.length - 1 - k]);
        }
      }
    });
    return out;
  }
  function nestedFrames(g) {
    return g.nodes().filter((k) => k.startsWith("c:")).map((k) => {
      const c = g.node(k);
      return { scope: c.cluster, depth: depth(g, k), x: c.x - c.width / 2, y: c.y - c.height / 2, width: c.width, height: c.height };
    });
  }
  function drawnFrames(g, chains) {
    // Each open scope's frame: its boxes' bounds, grown to hold the frames inside it.
    const box = new Map();
    const grow = (s, x0, y0, x1, y1) => {
      const b = box.get(s);
      if (!b) box.set(s, [x0, y0, x1, y1]);
      else box.set(s, [Math.min(b[0], x0), Math.min(b[1], y0), Math.max(b[2], x1), Math.max(b[3], y1)]);
    };
    for (const [key, chain] of chains) {
      const n = g.node(key);
      for (const s of chain) grow(s, n.x - n.width / 2, n.y - n.height / 2, n.x + n.width / 2, n.y + n.height / 2);
    }
    const level = (s) => { let d = 0; for (let p = data.scopes[s].parent; p >= 0; p = data.scopes[p].parent) d++; return d; };
    const scopes = [...box.keys()].sort((a, b) => level(b) - level(a));
    for (const s of scopes) {
      const b = box.get(s);
      const framed = [b[0] - 8, b[1] - 18, b[2] + 8, b[3] + 8];
      box.set(s, framed);
      const p = data.scopes[s].parent;
      if (p >= 0 && box.has(p)) grow(p, ...framed);
    }
    return scopes.map((s) => {
      const b = box.get(s);
      return { scope: s, depth: level(s), x: b[0], y: b[1], width: b[2] - b[0], height: b[3] - b[1] };
    });
  }

  function draw() {
    const started = performance.now();
    const { g, frames } = build();
    document.body.dataset.layoutMs = (performance.now() - started).toFixed(0);  // for the bench
    const svg = $("graph");
    svg.replaceChildren();
    const defs = sv("defs");
    for (const [id, colour] of [["arrow", "#555"], ["arrow-inserted", "#e69138"], ["arrow-aux", "#8e44ad"], ["arrow-shortcut", "#888"]]) {
      const m = sv("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      m.append(sv("path", { d: "M0,1 L10,5 L0,9 z", fill: colour }));
      defs.append(m);
    }
    svg.append(defs);
    const layers = { clusters: sv("g"), edges: sv("g"), units: sv("g") };
    svg.append(layers.clusters, layers.edges, layers.units);
    // Outer frames first, so inner frames are drawn over them.
    frames.sort((a, b) => a.depth - b.depth);
    for (const f of frames) {
      const s = f.scope;
      const sc = data.scopes[s];
      const grp = sv("g", { class: "cluster" + (sc.aux ? " aux" : "") + (selected === scopeKey(s) ? " sel" : ""), "data-scope": scopeKey(s) });
      grp.append(sv("rect", { class: "frame", x: f.x, y: f.y, width: f.width, height: f.height, rx: 6 }));
      const label = sc.name + (sc.aux ? " (aux head)" : "") + "  ⊟";
      grp.append(sv("text", { class: "label", x: f.x + 6, y: f.y + 12, "data-scope": scopeKey(s) }, label));
      layers.clusters.append(grp);
    }
    for (const e of g.edges()) {
      const d = g.edge(e);
      const pts = d.points;
      let path = "M" + pts[0].x + "," + pts[0].y;
      for (let k = 1; k < pts.length; k++) path += " L" + pts[k].x + "," + pts[k].y;
      const marker = d.cls && d.cls !== "" ? "arrow-" + d.cls : "arrow";
      layers.edges.append(sv("path", { class: "edge " + d.cls, d: path, "marker-end": "url(#" + marker + ")" }));
      if (d.label) layers.edges.append(sv("text", { class: "shape", x: d.x - d.width / 2 + 2, y: d.y + 4 }, d.label));
    }
    for (const key of g.nodes()) {
      if (key.startsWith("c:")) continue;
      const n = g.node(key);
      const u = n.unit;
      const x = n.x - n.width / 2, y = n.y - n.height / 2;
      const grp = sv("g", { class: ["unit", ...u.cls].join(" ").trim() + (isSelected(key) ? " sel" : ""), "data-unit": key });
      const isInput = key.startsWith("n:") && data.nodes[model.byName.get(key.slice(2))].op === "input";
      grp.append(sv("rect", { class: "box", x, y, width: n.width, height: n.height, rx: isInput ? 0 : 6, fill: u.fill }));
      u.lines.forEach((l, k) => {
        grp.append(sv("text", { class: l.cls || "", x: x + 12, y: y + 18 + k * 16 }, l.text));
      });
      if (u.toggle) {
        const t = sv("g", { class: "toggle", "data-toggle": key });
        t.append(sv("rect", { x: x + n.width - 20, y: y + 5, width: 14, height: 14, rx: 3 }));
        t.append(sv("text", { x: x + n.width - 17, y: y + 16 }, u.toggle));
        grp.append(t);
      }
      layers.units.append(grp);
    }
    const gr = g.graph();
    svg.setAttribute("viewBox", "0 0 " + gr.width + " " + gr.height);
    svg.dataset.width = gr.width;
    svg.dataset.height = gr.height;
    applyZoom();
    $("details").dataset.units = g.nodes().filter((k) => !k.startsWith("c:")).length;
  }
  function depth(g, k) {
    let d = 0;
    for (let p = g.parent(k); p !== undefined; p = g.parent(p)) d++;
    return d;
  }
  function isSelected(key) {
    if (selected === null) return false;
    if (selected === key) return true;
    if (selected.startsWith("n:") && model.byName.has(selected.slice(2))) {
      return unitOf(model.byName.get(selected.slice(2))) === key;
    }
    return false;
  }
  function applyZoom() {
    const svg = $("graph");
    svg.setAttribute("width", Math.round(svg.dataset.width * zoom));
    svg.setAttribute("height", Math.round(svg.dataset.height * zoom));
  }

  // details ----------------------------------------------------------------------------
  function row(table, label, value, cls) {
    const tr = el("tr");
    tr.append(el("td", {}, label), el("td", { class: cls || "" }, value));
    table.append(tr);
  }
  function excerpt(span) {
    // The source lines around a span, its line highlighted, its columns marked.
    const [f, line, col, endLine, endCol] = span;
    const file = data.files[f];
    const lines = file.text.split(/\r?\n/);
    const box = el("div", { class: "source" });
    box.append(el("div", { class: "src-head" }, file.name + ":" + line + ":" + col));
    const pre = el("pre", { class: "src", "data-line": line });
    const from = Math.max(1, line - 3), to = Math.min(lines.length, line + 3);
    for (let k = from; k <= to; k++) {
      const text = lines[k - 1] || "";
      const ln = el("span", { class: "ln" + (k === line ? " hl" : ""), "data-n": k });
      ln.append(el("i", {}, String(k)));
      if (k === line) {
        const end = endLine === line ? endCol : text.length + 1;
        ln.append(document.createTextNode(text.slice(0, col - 1)));
        ln.append(el("mark", {}, text.slice(col - 1, end - 1)));
        ln.append(document.createTextNode(text.slice(end - 1)));
      } else ln.append(document.createTextNode(text));
      pre.append(ln);
    }
    box.append(pre);
    return box;
  }
  function callSites(trace) {
    const box = el("div", { class: "trace" });
    for (const site of trace) {
      const [f, line] = site;
      const text = (data.files[f].text.split(/\r?\n/)[line - 1] || "").trim();
      const p = el("div", { class: "src-head" });
      p.append(el("span", {}, data.files[f].name + ":" + line), el("code", {}, text));
      box.append(p);
    }
    return box;
  }
  function showNode(i) {
    const n = data.nodes[i];
    const box = $("details");
    box.replaceChildren();
    box.dataset.kind = "node";
    box.append(el("h2", { class: "name" }, n.name));
    box.append(el("div", { class: "op" }, (n.op + " " + n.attrs).trim()));
    const marks = el("div", { class: "marks" });
    if (n.inserted) marks.append(el("span", { class: "inserted" }, "inserted projection"));
    if (n.frozen) marks.append(el("span", { class: "frozen" }, "frozen"));
    if (n.aux !== null) marks.append(el("span", { class: "aux" }, "aux head " + n.aux + " (training only)"));
    if (n.output) marks.append(el("span", {}, "output"));
    if (marks.childNodes.length) box.append(marks);
    const t = el("table", { class: "figures" });
    n.inputs.forEach((j, k) => {
      const src = data.nodes[j];
      row(t, n.inputs.length > 1 ? "input " + (k + 1) : "input", src.shape + "  from " + src.name, "in-shape");
    });
    row(t, "output", n.shape, "shape");
    const kind = n.params === 0 ? "" : n.frozen ? " (frozen)" : " (trainable)";
    row(t, "parameters", fmt(n.params) + kind, "num params");
    if (n.state) row(t, "running statistics", fmt(n.state), "num state");
    row(t, "MACs", fmt(n.macs) + (n.macs >= 1000 ? " (" + short(n.macs) + ")" : ""), "num macs");
    box.append(t);
    if (n.fields.length) {
      box.append(el("h3", {}, "arguments"));
      const a = el("table", { class: "args" });
      for (const [k, v] of n.fields) row(a, k, v);
      box.append(a);
    }
    box.append(el("h3", {}, n.inserted ? "source (the residual that needed it)" : "source"));
    box.append(excerpt(n.span));
    if (n.trace.length) {
      box.append(el("h3", {}, "called from"));
      box.append(callSites(n.trace));
    }
  }
  function showGroup(key) {
    const g = groupOf(key);
    const first = data.scopes[g.scopes[0]];
    const box = $("details");
    box.replaceChildren();
    box.dataset.kind = "group";
    const name = g.count > 1 ? first.name + " … " + data.scopes[g.scopes[g.count - 1]].name : first.name;
    box.append(el("h2", { class: "name" }, name));
    box.append(el("div", { class: "op" }, g.count > 1 ? g.count + " identical blocks in a row" : first.aux ? "auxiliary head, loss weight " + first.weight : "block"));
    const t = totals(g.nodes), b = boundary(g.nodes);
    const tab = el("table", { class: "figures" });
    row(tab, "layers", String(g.nodes.length), "num layers");
    if (b.in !== null) row(tab, "input", b.in, "in-shape");
    row(tab, "output", b.out, "shape");
    row(tab, "parameters", fmt(t.params), "num params");
    row(tab, "trainable", fmt(t.trainable), "num trainable");
    if (t.state) row(tab, "running statistics", fmt(t.state), "num state");
    row(tab, "MACs", fmt(t.macs) + (t.macs >= 1000 ? " (" + short(t.macs) + ")" : ""), "num macs");
    if (g.count > 1) row(tab, "each block", fmt(t.params / g.count) + " params, " + fmt(t.macs / g.count) + " MACs");
    if (t.inserted) row(tab, "inserted", t.inserted + " projection" + (t.inserted > 1 ? "s" : ""));
    box.append(tab);
    box.append(el("div", { class: "ops" }, opSummary(g.nodes)));
    const open = unitIsFolded(key);
    const btn = el("button", { type: "button", id: "toggle-group" }, open ? "expand" : "fold");
    btn.addEventListener("click", () => toggle(key));
    box.append(btn);
    box.append(el("h3", {}, "source"));
    box.append(excerpt(first.span));
  }
  function unitIsFolded(key) {
    return !expanded.has(key);
  }
  function showSelection() {
    if (selected === null) return;
    if (selected.startsWith("n:") && model.byName.has(selected.slice(2))) showNode(model.byName.get(selected.slice(2)));
    else if (selected.startsWith("s:") && model.scopeByName.has(selected.slice(2))) showGroup(selected);
    else if (selected.startsWith("r:") && data.runs.some((_, k) => runKey(k) === selected)) showGroup(selected);
    else {
      selected = null;
      $("details").replaceChildren(hint());
    }
  }
  function hint() {
    // The key lists only the marks this network uses.
    const used = {
      block: data.scopes.length > 0,
      inserted: data.nodes.some((n) => n.inserted),
      aux: data.scopes.some((s) => s.aux),
      frozen: data.nodes.some((n) => n.frozen),
      shortcut: data.nodes.some((n) => n.op === "residual"),
    };
    const out = HINT.cloneNode(true);
    for (const li of out.querySelectorAll("[data-mark]")) if (!used[li.dataset.mark]) li.remove();
    return out;
  }
  function select(key) {
    selected = key;
    for (const e of document.querySelectorAll("#graph .sel")) e.classList.remove("sel");
    const unit = document.querySelector('#graph [data-unit="' + CSS.escape(key) + '"]');
    if (unit) unit.classList.add("sel");
    showSelection();
  }
  function toggle(key) {
    if (expanded.has(key)) {
      expanded.delete(key);
      // Folding a scope folds the run holding it, so that the fold is visible.
      if (key.startsWith("s:")) {
        const s = model.scopeByName.get(key.slice(2));
        if (data.scopes[s].run !== undefined) expanded.delete(runKey(data.scopes[s].run));
      }
    } else expanded.add(key);
    draw();
    if (selected !== null) showSelection();
  }
  function reveal(i) {
    for (const s of model.chain[i]) {
      expanded.add(scopeKey(s));
      if (data.scopes[s].run !== undefined) expanded.add(runKey(data.scopes[s].run));
    }
    selected = "n:" + data.nodes[i].name;
    draw();
    showSelection();
    const unit = document.querySelector('#graph [data-unit="' + CSS.escape(selected) + '"]');
    if (unit) {
      unit.scrollIntoView({ block: "center", inline: "center" });
      unit.classList.add("flash");
      setTimeout(() => unit.classList.remove("flash"), 1200);
    }
  }
  function search(text) {
    const q = text.trim().toLowerCase();
    $("status").textContent = "";
    if (!q || data.kind !== "graph") return;
    let i = data.nodes.findIndex((n) => n.name.toLowerCase() === q);
    if (i < 0) i = data.nodes.findIndex((n) => n.name.toLowerCase().includes(q));
    if (i < 0) {
      $("status").textContent = "no layer named “" + text.trim() + "”";
      return;
    }
    reveal(i);
  }

  // header, errors, payloads -------------------------------------------------------------
  function header() {
    document.title = (data.kind === "graph" ? data.network : "errors") + " · archdsl view";
    const t = $("title");
    t.replaceChildren(document.createTextNode(data.kind === "graph" ? data.network : "archdsl view"));
    t.append(el("span", { class: "spec" }, data.spec));
    const tot = $("totals");
    tot.replaceChildren();
    if (data.kind !== "graph") return;
    const s = data.totals;
    const parts = [
      ["layers", fmt(s.layers)],
      ["params", fmt(s.params) + " (" + short(s.params) + ")"],
    ];
    if (s.trainable !== s.params) parts.push(["trainable", fmt(s.trainable)]);
    if (s.aux) parts.push(["without aux heads", fmt(s.inference_params)]);
    parts.push(["MACs per example", short(s.macs)]);
    parts.forEach(([k, v], n) => {
      if (n) tot.append(document.createTextNode(" · "));
      tot.append(el("b", {}, v), document.createTextNode(" " + k));
    });
    if (data.batch) {
      const b = data.batch;
      let text = "batch " + b.batch + ": inference " + short(b.inference.flops) + " FLOPs, " +
        bytes(b.inference.peak_bytes);
      if (b.training) {
        text += " · training step (" + b.training.optimizer + ") " + short(b.training.flops) +
          " FLOPs, " + bytes(b.training.peak_bytes);
      }
      tot.append(el("span", { class: "batch", title: "estimate: " + b.method }, text));
    }
  }
  function showErrors() {
    const box = $("errors");
    box.replaceChildren();
    const n = data.errors.length;
    box.append(el("h2", {}, n === 1 ? "the spec has an error" : "the spec has " + n + " errors"));
    for (const e of data.errors) {
      const d = el("div", { class: "diag" });
      if (e.file !== null) d.append(el("div", { class: "where" }, e.file + ":" + e.line + ":" + e.column));
      d.append(el("div", { class: "msg" }, e.message));
      d.append(el("pre", {}, e.text));
      box.append(d);
    }
    if (LIVE) box.append(el("p", { class: "note" }, "Fix the file and save: this page follows it."));
  }
  function setPayload(payload, keepState) {
    data = payload;
    header();
    const graph = data.kind === "graph";
    $("errors").hidden = graph;
    $("canvas").hidden = !graph;
    $("details").hidden = !graph;
    document.body.dataset.kind = data.kind;
    if (!graph) {
      showErrors();
      return;
    }
    model = prepare(data);
    if (!keepState) expanded = defaultExpanded();
    const names = $("names");
    names.replaceChildren(...data.nodes.map((n) => el("option", { value: n.name })));
    draw();
    if (selected === null) $("details").replaceChildren(hint());
    showSelection();
  }

  // events -----------------------------------------------------------------------------
  $("graph").addEventListener("click", (ev) => {
    const t = ev.target.closest("[data-toggle]");
    if (t) { toggle(t.dataset.toggle); return; }
    const u = ev.target.closest("[data-unit]");
    if (u) { select(u.dataset.unit); return; }
    const c = ev.target.closest("text[data-scope]");
    if (c) { ev.shiftKey ? select(c.dataset.scope) : toggle(c.dataset.scope); }
  });
  $("graph").addEventListener("dblclick", (ev) => {
    const u = ev.target.closest("[data-unit]");
    if (u && !u.dataset.unit.startsWith("n:")) toggle(u.dataset.unit);
  });
  $("search").addEventListener("keydown", (ev) => { if (ev.key === "Enter") search(ev.target.value); });
  $("search").addEventListener("change", (ev) => search(ev.target.value));
  $("expand-all").addEventListener("click", () => { expanded = allExpanded(); draw(); });
  $("collapse-all").addEventListener("click", () => { expanded = defaultExpanded(); draw(); });
  $("zoom-in").addEventListener("click", () => { zoom = Math.min(3, zoom * 1.25); applyZoom(); });
  $("zoom-out").addEventListener("click", () => { zoom = Math.max(0.2, zoom / 1.25); applyZoom(); });

  async function follow() {
    // Long-poll the local server; it answers when the spec or an import changes.
    for (;;) {
      try {
        const r = await fetch("/state?since=" + version, { cache: "no-store" });
        const j = await r.json();
        $("status").textContent = "";
        if (j.version !== version) {
          const wasGraph = data && data.kind === "graph";
          version = j.version;
          setPayload(j.payload, wasGraph && j.payload.kind === "graph");
          document.body.dataset.version = version;
        }
      } catch (err) {
        $("status").textContent = "server stopped; retrying";
        await new Promise((done) => setTimeout(done, 2000));
      }
    }
  }

  const initial = JSON.parse($("archdsl-data").textContent);
  version = initial.version || 0;
  document.body.dataset.version = version;
  setPayload(initial.payload, false);
  window.archdslView = { search, reveal: (name) => reveal(model.byName.get(name)), toggle };
  document.body.dataset.readyMs = performance.now().toFixed(0);  // read by bench/viewer.py
  document.body.dataset.ready = "1";
  if (LIVE) follow();
})();
