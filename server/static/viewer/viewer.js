/* 一张蓝图 viewer: a thin client over Lantu's standard endpoints.
 *   layer tree   /viewer/config.json (the registry) ∩ /collections (what this caller may see)
 *   map          /tiles/blueprint/WebMercatorQuad (OGC API – Tiles, TileJSON) and /wmts (base maps)
 *   identify     /collections/{id}/items/{fid} (OGC API – Features)
 *   search       /collections/{id}/items?filter=… (CQL2 text)
 *   checks       /processes/{id}/execution with Prefer: respond-async, /jobs/{id}, /jobs/{id}/results/{output}
 * Every URL is relative to the page's origin; nothing is fetched from anywhere else. */
(function () {
  "use strict";
  var ROOT = new URL("./", location.href).href;   // "/viewer" → "/": works behind a path prefix too
  var state = { lang: localStorage.getItem("lantu.lang") || "zh", key: sessionStorage.getItem("lantu.key") || "",
                config: null, layers: {}, visible: {}, opacity: {}, allowed: null, map: null, site: null,
                drawing: null, towns: [], lastConflict: null };
  var T = {
    zh: { title: "一张蓝图", panel: "面板", searchTown: "乡镇", searchBsm: "标识码", searchHint: "乡镇名称、行政区代码",
          search: "搜索", identity: "身份", keyLabel: "API 密钥或令牌", apply: "应用", signOut: "清除",
          tabLayers: "图层", tabCheck: "项目检测", tabConflict: "差异图斑", graticule: "CGCS2000 经纬网",
          checkHint: "在地图上绘制项目用地，或上传 GeoJSON、Shapefile（zip）、GeoPackage，执行控制线检测。",
          projectName: "项目名称", projectNameHint: "示例项目", draw: "绘制用地", drawFinish: "完成绘制", clear: "清除",
          upload: "上传文件", checkRun: "执行控制线检测", ruleSet: "规则集", rsUrban: "两规差异（城规与土规）",
          rsThree: "三条控制线冲突", rsCrop: "规划建设占用耕地", aoi: "检测范围", wholeCounty: "全县",
          minArea: "最小图斑面积 (m²)", conflictRun: "执行冲突检测", anonymous: "匿名访问（仅公开图层）",
          signedIn: "已使用凭证", badKey: "凭证无效", opacity: "透明度", fromZoom: "级起显示",
          notFound: "未找到", found: "找到", drawHelp: "在地图上单击添加顶点，完成后点击“完成绘制”",
          siteDrawn: "已绘制用地", siteFile: "已选择文件", verdict: "审查结论", layer: "图层", overlap: "占用面积",
          share: "占比", features: "涉及要素", distance: "最近距离 (m)", pdf: "下载空间预审报告 (PDF)",
          html: "查看报告 (HTML)", queued: "排队等待", running: "正在执行", failed: "执行失败", done: "完成",
          byClass: "按类别汇总", byTown: "按乡镇汇总", cls: "类别", count: "图斑数", area: "面积", town: "乡镇",
          csv: "导出 CSV", hits: "命中的控制线", none: "无", mu: "亩", ha: "公顷", planar: "平面",
          field: "字段", value: "值", results: "搜索结果", noLayerOn: "请先打开要搜索的图层" },
    en: { title: "One blueprint", panel: "Panel", searchTown: "Town", searchBsm: "BSM", searchHint: "town name or XZQDM",
          search: "Search", identity: "Identity", keyLabel: "API key or token", apply: "Apply", signOut: "Clear",
          tabLayers: "Layers", tabCheck: "Project check", tabConflict: "Discrepancies", graticule: "CGCS2000 graticule",
          checkHint: "Draw the project site on the map or upload GeoJSON, zipped Shapefile or GeoPackage, then run the control-line check.",
          projectName: "Project name", projectNameHint: "Example project", draw: "Draw site", drawFinish: "Finish",
          clear: "Clear", upload: "Upload file", checkRun: "Run control-line check", ruleSet: "Rule set",
          rsUrban: "Urban vs land-use plan", rsThree: "Three control lines", rsCrop: "Construction on cropland",
          aoi: "Area", wholeCounty: "Whole county", minArea: "Minimum patch area (m²)", conflictRun: "Run conflict check",
          anonymous: "Anonymous (public layers only)", signedIn: "Using credentials", badKey: "Credentials refused",
          opacity: "Opacity", fromZoom: "from zoom", notFound: "Not found", found: "Found",
          drawHelp: "Click on the map to add vertices, then Finish", siteDrawn: "Site drawn", siteFile: "File chosen",
          verdict: "Verdict", layer: "Layer", overlap: "Overlap", share: "Share", features: "Features",
          distance: "Nearest (m)", pdf: "Download pre-review report (PDF)", html: "Report (HTML)", queued: "Queued",
          running: "Running", failed: "Failed", done: "Done", byClass: "By class", byTown: "By town", cls: "Class",
          count: "Patches", area: "Area", town: "Town", csv: "Export CSV", hits: "Control lines hit", none: "none",
          mu: "mu", ha: "ha", planar: "planar", field: "Field", value: "Value", results: "Results",
          noLayerOn: "Turn on the layers to search first" }
  };
  function t(key) { return (T[state.lang] && T[state.lang][key]) || T.zh[key] || key; }
  function $(id) { return document.getElementById(id); }
  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
    return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; }); }
  function lname(l) { return state.lang === "en" ? l.title_en : l.name_zh; }
  function toast(msg) { var el = $("toast"); el.textContent = msg; el.hidden = false;
    clearTimeout(toast.timer); toast.timer = setTimeout(function () { el.hidden = true; }, 5000); }

  // ---- identity: every request to Lantu carries the caller's key or token ------------------------------
  function authHeaders() {
    var k = state.key;
    if (!k) return {};
    return /^[\w-]+\.[\w-]+\.[\w-]*$/.test(k) ? { Authorization: "Bearer " + k } : { "X-API-Key": k };
  }
  function api(path, opts) {
    opts = opts || {};
    var headers = Object.assign({ Accept: "application/json" }, authHeaders(), opts.headers || {});
    return fetch(new URL(path, ROOT).href, Object.assign({}, opts, { headers: headers }));
  }
  function apiJSON(path, opts) {
    return api(path, opts).then(function (r) {
      if (!r.ok) return r.json().catch(function () { return {}; }).then(function (p) {
        var err = new Error(p.detail || p.title || ("HTTP " + r.status)); err.status = r.status; throw err; });
      return r.json();
    });
  }
  function sameOrigin(url) { try { return new URL(url, ROOT).origin === location.origin; } catch (e) { return false; } }
  function rel(href) { var u = new URL(href, ROOT); return u.origin === location.origin ? u.pathname.replace(/^\//, "") + u.search : href; }

  // ---- i18n --------------------------------------------------------------------------------------------
  function applyLang() {
    document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
    document.querySelectorAll("[data-i18n]").forEach(function (el) { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (el) { el.placeholder = t(el.dataset.i18nPlaceholder); });
    document.querySelectorAll("[data-i18n-title]").forEach(function (el) { el.title = t(el.dataset.i18nTitle); });
    $("lang").textContent = state.lang === "en" ? "中文" : "EN";
    if (state.config) buildTree();
    showIdentity();
  }

  // ---- styles from the registry -----------------------------------------------------------------------
  function classExpr(classes, fallback) {
    var expr = ["case"];
    classes.rules.forEach(function (r) {
      var v = ["to-string", ["get", classes.field]];
      expr.push(r[0] === "eq" ? ["==", v, r[1]] : ["==", ["slice", v, 0, r[1].length], r[1]]);
      expr.push(r[2]);
    });
    expr.push(fallback || "#DCDCDC");
    return expr;
  }
  function mapLayersFor(l) {
    // Registry zooms are tile levels: MapLibre loads level z of the blueprint tileset at map zoom z.
    var s = l.style, base = { source: "blueprint", "source-layer": l.id, minzoom: l.min_zoom,
                              maxzoom: l.max_zoom >= 20 ? 24 : l.max_zoom + 1, layout: { visibility: "none" } };
    var out = [];
    if (l.geometry === "Polygon") {
      var fill = s.classes ? classExpr(s.classes, s.fill) : (s.fill || s.stroke);
      var paint = { "fill-color": fill, "fill-opacity": s.fill ? s.fill_opacity : 0 };
      if (s.hatch) paint = { "fill-pattern": "hatch-" + l.id, "fill-opacity": s.fill_opacity };
      out.push(Object.assign({ id: l.id + "::fill", type: "fill", paint: paint }, base));
      var lp = { "line-color": s.stroke, "line-width": s.stroke_width };
      if (s.dash && s.dash.length) lp["line-dasharray"] = s.dash.map(function (d) { return d / s.stroke_width; });
      out.push(Object.assign({ id: l.id + "::line", type: "line", paint: lp }, base));
    } else if (l.geometry === "LineString") {
      var p = { "line-color": s.stroke, "line-width": s.stroke_width };
      if (s.dash && s.dash.length) p["line-dasharray"] = s.dash.map(function (d) { return d / s.stroke_width; });
      out.push(Object.assign({ id: l.id + "::line", type: "line", paint: p }, base));
    } else if (l.geometry === "Point") {
      out.push(Object.assign({ id: l.id + "::point", type: "circle", paint: {
        "circle-radius": s.point_size / 2, "circle-color": s.fill || s.stroke, "circle-stroke-color": s.stroke,
        "circle-stroke-width": 1 } }, base));
    }
    return out;
  }
  function layerRank(l) {  // polygons (status, plans, projects, ledger, control lines) → lines → points
    if (l.geometry === "Point") return 9;
    if (l.geometry === "LineString") return 8;
    if (l.control_line) return 5;
    return { status: 1, planning: 2, projects: 3, blueprint: 4 }[l.group] || 2;
  }
  function hatchImage(l) {  // 永久基本农田-style hatching: stroke-colour diagonals on the light fill
    var n = 8, c = document.createElement("canvas"); c.width = c.height = n;
    var g = c.getContext("2d");
    g.fillStyle = l.style.fill || "#ffffff"; g.fillRect(0, 0, n, n);
    g.strokeStyle = l.style.stroke; g.lineWidth = 1;
    g.beginPath(); g.moveTo(0, n); g.lineTo(n, 0); g.moveTo(-1, 1); g.lineTo(1, -1); g.moveTo(n - 1, n + 1);
    g.lineTo(n + 1, n - 1); g.stroke();
    return g.getImageData(0, 0, n, n);
  }

  function buildStyle(cfg) {
    var style = { version: 8, sources: {}, layers: [{ id: "background", type: "background", paint: { "background-color": "#f2efe9" } }] };
    var all = [];
    cfg.groups.forEach(function (g) { g.subgroups.forEach(function (sg) { sg.layers.forEach(function (l) { all.push(l); }); }); });
    all.filter(function (l) { return l.wmts; }).forEach(function (l) {
      l.wmts.forEach(function (w) {
        var sid = "wmts-" + w.layer;
        style.sources[sid] = { type: "raster", tileSize: 256, minzoom: w.min_zoom, maxzoom: 18,
                               tiles: [new URL(cfg.wmts.replace("{layer}", w.layer), ROOT).href.replace(/%7B/g, "{").replace(/%7D/g, "}")] };
        style.layers.push({ id: l.id + "::" + sid, type: "raster", source: sid, minzoom: w.min_zoom,
                            layout: { visibility: "none" }, paint: { "raster-opacity": 1, "raster-fade-duration": 0 } });
      });
    });
    var tj = state.tilejson || {};
    style.sources.blueprint = { type: "vector", tiles: tj.tiles || [new URL(cfg.tiles, ROOT).href.replace(/%7B/g, "{").replace(/%7D/g, "}")],
                                minzoom: tj.minzoom || 0, maxzoom: Math.min(tj.maxzoom || 22, 22) };
    all.filter(function (l) { return l.kind === "vector" && allowed(l); })
       .map(function (l, i) { return [layerRank(l), i, l]; })
       .sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; })
       .forEach(function (x) { mapLayersFor(x[2]).forEach(function (ml) { style.layers.push(ml); }); });
    all.forEach(function (l) { state.layers[l.id] = l; });
    return style;
  }

  // ---- layer tree ----------------------------------------------------------------------------------------
  function swatch(l) {
    var s = l.style, cls = l.geometry === "LineString" ? "line" : l.geometry === "Point" ? "point" : "";
    var bg = l.geometry === "LineString" ? "transparent" : (s.fill || (l.wmts ? "#ddd" : s.stroke));
    return '<span class="swatch ' + cls + '" style="border-color:' + esc(s.stroke || "#888") + ";background:" + esc(bg) + '"></span>';
  }
  function buildTree() {
    var html = [], cfg = state.config;
    cfg.groups.forEach(function (g) {
      var subs = [];
      g.subgroups.forEach(function (sg) {
        var rows = sg.layers.filter(allowed).map(function (l) {
          var on = !!state.visible[l.id], op = state.opacity[l.id] == null ? 100 : state.opacity[l.id];
          var legend = "";
          if (l.style.classes) {
            legend = '<details class="legend"><summary>' + esc(state.lang === "en" ? "Legend" : "图例") + "</summary>" + l.style.classes.rules.map(function (r) {
              return '<div><span class="swatch" style="border-color:' + esc(r[2]) + ";background:" + esc(r[2]) + '"></span>' + esc(r[3]) + "</div>";
            }).join("") + "</details>";
          }
          var zoom = l.min_zoom ? ' <span class="zoomnote">' + l.min_zoom + (state.lang === "en" ? "+" : t("fromZoom")) + "</span>" : "";
          return '<div class="layer" data-layer="' + esc(l.id) + '"><label title="' + esc(l.name_zh + " · " + l.title_en + " (" + l.id + ")") +
            '"><input type="checkbox" data-toggle="' + esc(l.id) + '"' + (on ? " checked" : "") + ">" + swatch(l) +
            '<span class="name">' + esc(lname(l)) + "</span>" + zoom + '</label><input type="range" min="0" max="100" value="' + op +
            '" data-opacity="' + esc(l.id) + '" aria-label="' + esc(t("opacity") + " " + lname(l)) + '"></div>' + legend;
        }).join("");
        if (rows) subs.push('<details class="subgroup" open><summary>' + esc(sg.name_zh) + "</summary>" + rows + "</details>");
      });
      if (subs.length) html.push('<details class="group"' + (g.id === "planning" || g.id === "basemap" ? " open" : "") +
                                 '><summary>' + esc(state.lang === "en" ? g.name_en : g.name_zh) + "</summary>" + subs.join("") + "</details>");
    });
    $("tree").innerHTML = html.join("");
    updateZoomNotes();
  }
  function allowed(l) { return l.wmts ? true : !state.allowed || state.allowed.has(l.id); }
  function updateZoomNotes() {
    if (!state.map) return;
    var z = state.map.getZoom();
    document.querySelectorAll("#tree .layer").forEach(function (row) {
      var l = state.layers[row.dataset.layer];
      row.querySelector(".name").classList.toggle("out", z < (l.min_zoom || 0));
    });
  }
  function mapLayerIds(id) {
    return state.map.getStyle().layers.filter(function (ml) { return ml.id.split("::")[0] === id; }).map(function (ml) { return ml.id; });
  }
  function setVisible(id, on) {
    state.visible[id] = on;
    if (!state.map) return;
    mapLayerIds(id).forEach(function (mid) { state.map.setLayoutProperty(mid, "visibility", on && allowed(state.layers[id]) ? "visible" : "none"); });
    var box = document.querySelector('[data-toggle="' + id + '"]');
    if (box) box.checked = on;
  }
  function setOpacity(id, pct) {
    state.opacity[id] = pct;
    var l = state.layers[id], f = pct / 100, map = state.map;
    mapLayerIds(id).forEach(function (mid) {
      var type = map.getLayer(mid).type;
      if (type === "fill") map.setPaintProperty(mid, "fill-opacity", (l.style.fill || l.style.hatch ? l.style.fill_opacity : 0) * f);
      else if (type === "line") map.setPaintProperty(mid, "line-opacity", f);
      else if (type === "circle") { map.setPaintProperty(mid, "circle-opacity", f); map.setPaintProperty(mid, "circle-stroke-opacity", f); }
      else if (type === "raster") map.setPaintProperty(mid, "raster-opacity", f);
    });
  }

  // ---- what this caller may see: the blueprint tileset's TileJSON lists the layers the access gate lets
  // this caller view; the map style and the tree hold only those -------------------------------------------
  function loadAllowed() {
    return apiJSON(state.config.tileset + "?f=tilejson").then(function (tj) {
      state.tilejson = tj;
      state.allowed = new Set((tj.vector_layers || []).map(function (v) { return v.id; }));
      showIdentity();
      return state.allowed;
    }, function (err) {
      state.allowed = new Set();
      if (err.status === 401 || err.status === 403) showIdentity(t("badKey") + ": " + err.message, true);
      else toast(err.message);
    });
  }
  function showIdentity(msg, refused) {
    $("identity-status").textContent = msg || (state.key ? t("signedIn") : t("anonymous")) +
      (state.allowed ? " · " + state.allowed.size + " " + t("layer") : "");
    if (refused) document.body.dataset.identity = "refused";
    else if (state.allowed) document.body.dataset.identity = "accepted";
  }
  function applyIdentity() {  // a new caller sees other layers: rebuild the page for them (the key stays in this tab)
    location.reload();
  }

  // ---- identify ---------------------------------------------------------------------------------------------
  function fieldName(l, code) {
    var f = l.fields.filter(function (x) { return x.code === code; })[0];
    return f ? (state.lang === "en" ? code : f.name_zh) : code;
  }
  function popupHtml(l, feature) {
    var props = feature.properties || {};
    var rows = l.fields.filter(function (f) { return f.code in props; }).map(function (f) {
      return "<tr><th>" + esc(fieldName(l, f.code)) + '</th><td data-field="' + esc(f.code) + '">' + esc(props[f.code]) + "</td></tr>";
    });
    return '<div class="popup" data-layer="' + esc(l.id) + '"><h4>' + esc(lname(l)) + "</h4><table>" + rows.join("") + "</table></div>";
  }
  function identify(e) {
    var map = state.map;
    var ids = Object.keys(state.visible).filter(function (id) { return state.visible[id] && state.layers[id].kind === "vector"; });
    var mls = [];
    ids.forEach(function (id) { mls = mls.concat(mapLayerIds(id)); });
    if (!mls.length) return;
    var box = [[e.point.x - 3, e.point.y - 3], [e.point.x + 3, e.point.y + 3]];
    var hits = map.queryRenderedFeatures(box, { layers: mls });
    if (!hits.length) return;
    var f = hits[0], l = state.layers[f.layer.id.split("::")[0]];
    var popup = new maplibregl.Popup({ maxWidth: "340px" }).setLngLat(e.lngLat).setHTML('<div class="popup">…</div>').addTo(map);
    apiJSON("collections/" + encodeURIComponent(l.id) + "/items/" + encodeURIComponent(f.id) + "?f=json")
      .then(function (feature) { popup.setHTML(popupHtml(l, feature)); },
            function (err) {  // e.g. a view-only layer (403 on download): the tile's own attributes, with the reason
              popup.setHTML(popupHtml(l, { properties: f.properties }) + '<p class="hint">' + esc(err.message) + "</p>");
            });
  }

  // ---- search (OGC API – Features `filter`, CQL2 text) ---------------------------------------------------------
  function cqlString(s) { return "'" + String(s).replace(/'/g, "''") + "'"; }
  function bboxOf(geom) {
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    (function walk(c) { if (typeof c[0] === "number") { b[0] = Math.min(b[0], c[0]); b[1] = Math.min(b[1], c[1]);
      b[2] = Math.max(b[2], c[0]); b[3] = Math.max(b[3], c[1]); } else c.forEach(walk); })(geom.coordinates);
    return b;
  }
  function showFound(fc) {
    state.map.getSource("found").setData(fc);
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    fc.features.forEach(function (f) { var x = bboxOf(f.geometry); b = [Math.min(b[0], x[0]), Math.min(b[1], x[1]), Math.max(b[2], x[2]), Math.max(b[3], x[3])]; });
    if (isFinite(b[0])) state.map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 40, maxZoom: 16, duration: 0 });
  }
  function search(ev) {
    ev.preventDefault();
    var q = $("search-text").value.trim(), kind = $("search-kind").value;
    if (!q) return;
    var cfg = state.config;
    if (kind === "town") {
      var tf = cfg.town_fields;
      var filter = /^\d+$/.test(q) ? tf.code + " = " + cqlString(q) : tf.name + " LIKE " + cqlString("%" + q.replace(/[%_\\]/g, "\\$&") + "%");
      apiJSON("collections/" + cfg.county_layer + "/items?f=json&limit=20&filter=" + encodeURIComponent(filter))
        .then(function (fc) {
          if (!fc.features.length) { toast(t("notFound") + ": " + q); return; }
          fc.features = fc.features.slice(0, 1);
          showFound(fc);
          $("search").dataset.result = fc.features[0].properties[tf.name];
        }, function (err) { toast(err.message); });
    } else {
      var ids = Object.keys(state.visible).filter(function (id) { return state.visible[id] && state.layers[id].kind === "vector" && allowed(state.layers[id]); });
      if (!ids.length) { toast(t("noLayerOn")); return; }
      Promise.all(ids.map(function (id) {
        return apiJSON("collections/" + id + "/items?f=json&limit=5&filter=" + encodeURIComponent("BSM = " + cqlString(q)))
          .then(function (fc) { fc.features.forEach(function (f) { f.properties.__layer = id; }); return fc.features; }, function () { return []; });
      })).then(function (lists) {
        var feats = [].concat.apply([], lists);
        if (!feats.length) { toast(t("notFound") + ": " + q); return; }
        showFound({ type: "FeatureCollection", features: feats });
        var f = feats[0], l = state.layers[f.properties.__layer], c = bboxOf(f.geometry);
        new maplibregl.Popup({ maxWidth: "340px" }).setLngLat([(c[0] + c[2]) / 2, (c[1] + c[3]) / 2]).setHTML(popupHtml(l, f)).addTo(state.map);
      });
    }
  }

  // ---- jobs (OGC API – Processes, asynchronous) ----------------------------------------------------------------
  function runJob(process, inputs, progressEl) {
    progressEl.hidden = false;
    var bar = progressEl.querySelector("progress"), msg = progressEl.querySelector(".msg");
    bar.value = 0; msg.textContent = t("queued");
    return api("processes/" + process + "/execution", {
      method: "POST", headers: { "Content-Type": "application/json", Prefer: "respond-async" },
      body: JSON.stringify({ inputs: inputs, response: "document" })
    }).then(function (r) {
      if (r.status !== 201) return r.json().then(function (p) { throw new Error(p.detail || p.title || ("HTTP " + r.status)); });
      var job = rel(r.headers.get("Location"));
      return new Promise(function (resolve, reject) {
        (function poll() {
          apiJSON(job).then(function (st) {
            bar.value = st.progress || 0;
            msg.textContent = (t(st.status === "accepted" ? "queued" : st.status === "running" ? "running" :
                               st.status === "successful" ? "done" : "failed")) + " " + (st.progress || 0) + "%" +
                              (st.message ? " · " + st.message : "");
            msg.dataset.status = st.status;
            if (st.status === "successful") resolve(job);
            else if (st.status === "failed" || st.status === "dismissed") reject(new Error(st.message || st.status));
            else setTimeout(poll, 300);
          }, reject);
        })();
      });
    });
  }

  // ---- project check -----------------------------------------------------------------------------------------------
  function setSite(site, label) {
    state.site = site;
    $("site-status").textContent = label;
    $("check-run").disabled = !site;
    var geom = site && site.type ? site : null;
    state.map.getSource("site").setData(geom ? { type: "Feature", geometry: geom, properties: {} } : { type: "FeatureCollection", features: [] });
  }
  function startDraw() {
    state.drawing = [];
    $("draw-finish").disabled = false;
    state.map.getCanvas().style.cursor = "crosshair";
    $("site-status").textContent = t("drawHelp");
  }
  function drawClick(e) {
    state.drawing.push([e.lngLat.lng, e.lngLat.lat]);
    var ring = state.drawing.concat([state.drawing[0]]);
    state.map.getSource("site").setData({ type: "Feature", properties: {},
      geometry: state.drawing.length > 2 ? { type: "Polygon", coordinates: [ring] } : { type: "LineString", coordinates: ring } });
  }
  function finishDraw() {
    var pts = state.drawing || [];
    state.drawing = null; $("draw-finish").disabled = true; state.map.getCanvas().style.cursor = "";
    if (pts.length < 3) { setSite(null, ""); return; }
    setSite({ type: "Polygon", coordinates: [pts.concat([pts[0]])] }, t("siteDrawn") + " (" + pts.length + ")");
  }
  function readFile(file) {
    var name = file.name.toLowerCase();
    if (/\.(geo)?json$/.test(name)) {
      return file.text().then(function (text) {
        var doc = JSON.parse(text);
        var geom = doc.type === "FeatureCollection" ? doc.features[0].geometry : doc.type === "Feature" ? doc.geometry : doc;
        setSite(geom, t("siteFile") + ": " + file.name);
        var b = bboxOf(geom);
        state.map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 80, maxZoom: 15, duration: 0 });
      });
    }
    var type = /\.zip$/.test(name) ? "application/zip" : "application/geopackage+sqlite3";
    return file.arrayBuffer().then(function (buf) {
      var bytes = new Uint8Array(buf), bin = "";
      for (var i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      setSite({ value: btoa(bin), encoding: "base64", mediaType: type }, t("siteFile") + ": " + file.name);
    });
  }
  function area(a) { return a ? (a.mu.toFixed(2) + " " + t("mu") + " / " + a.ha.toFixed(4) + " " + t("ha")) : ""; }
  function runCheck() {
    if (!state.site) return;
    var inputs = { site: state.site, project_name: $("project-name").value || t("projectNameHint"), report: true };
    $("check-run").disabled = true; $("check-result").innerHTML = "";
    runJob("control-line-check", inputs, $("check-progress")).then(function (job) {
      return apiJSON(job + "/results/result").then(function (res) { showCheck(res, job); });
    }).catch(function (err) { toast(err.message); $("check-result").innerHTML = '<p class="hint">' + esc(err.message) + "</p>"; })
      .then(function () { $("check-run").disabled = !state.site; });
  }
  function showCheck(res, job) {
    var v = res.verdict, hits = [], rows = [];
    Object.keys(res.layers).forEach(function (id) {
      var r = res.layers[id];
      if (!r.intersects) return;
      var title = state.lang === "en" ? r.title_en : r.title;
      rows.push("<tr" + (r.control_line ? ' class="cl"' : "") + "><td>" + esc(title) + "</td><td>" + esc(area(r.overlap && r.overlap.planar)) +
        "</td><td>" + esc((r.share * 100).toFixed(1)) + "%</td><td>" + r.features.map(function (f) {
          hits.push([id, f.fid]);
          var a = f.attributes || {}, label = Object.keys(a).filter(function (k) { return k !== "BSM" && k !== "XZQMC"; }).map(function (k) { return a[k]; })[0];
          return '<span class="hit" data-layer="' + esc(id) + '" data-bsm="' + esc(f.bsm) + '">' + esc(f.bsm) + (label ? " " + esc(label) : "") + "</span>";
        }).join("<br>") + "</td></tr>");
    });
    var rules = (res.rules_applied || []).map(function (r) { return esc(typeof r === "string" ? r : (r.reason || r.rule || JSON.stringify(r))); });
    $("check-result").innerHTML =
      "<div>" + esc(t("verdict")) + ': <span id="verdict" class="verdict v-' + esc(v) + '">' + esc(state.lang === "en" && res.verdict_en ? v + " " + res.verdict_en : v) + "</span></div>" +
      (rules.length ? '<ul class="hint">' + rules.map(function (r) { return "<li>" + r + "</li>"; }).join("") + "</ul>" : "") +
      '<table class="result"><tr><th>' + esc(t("layer")) + "</th><th>" + esc(t("overlap")) + " (" + esc(t("planar")) + ")</th><th>" + esc(t("share")) +
      "</th><th>" + esc(t("features")) + "</th></tr>" + rows.join("") + "</table>" +
      '<div class="row"><button type="button" id="report-pdf" class="primary">' + esc(t("pdf")) + '</button> <a id="report-html" target="_blank" href="' +
      esc(new URL(job + "/results/report_html", ROOT).href) + '">' + esc(t("html")) + "</a></div>";
    $("report-pdf").onclick = function () { download(job + "/results/report_pdf", "空间预审报告.pdf"); };
    // the site and the control-line features it hits, from OGC API – Features
    Promise.all(hits.filter(function (h) { return state.layers[h[0]] && state.layers[h[0]].control_line; }).slice(0, 30).map(function (h) {
      return apiJSON("collections/" + h[0] + "/items/" + h[1] + "?f=json").catch(function () { return null; });
    })).then(function (feats) {
      state.hitFeatures = feats.filter(Boolean);
      state.map.getSource("hits").setData({ type: "FeatureCollection", features: state.hitFeatures });
    });
    if (res.site && res.site.geometry) {  // the site as the process read it (also for uploaded files)
      state.map.getSource("site").setData({ type: "Feature", properties: {}, geometry: { type: res.site.geometry.type, coordinates: res.site.geometry.coordinates } });
    }
    if (res.site && res.site.bbox) { var b = res.site.bbox; state.map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 80, maxZoom: 14, duration: 0 }); }
  }
  function download(path, filename) {  // fetched with the caller's credentials, then saved
    return api(path, { headers: { Accept: "*/*" } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.blob();
    }).then(function (blob) { saveBlob(blob, filename); }, function (err) { toast(err.message); });
  }
  function saveBlob(blob, filename) {
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = filename; document.body.appendChild(a); a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  // ---- 差异图斑 (conflict-check) ---------------------------------------------------------------------------------
  var CLASS_COLOURS = { C: "#C00000", A: "#FF6A00", B: "#1E90FF", D: "#9932CC" };
  var PALETTE = ["#E6194B", "#F58231", "#4363D8", "#911EB4", "#3CB44B", "#F032E6", "#9A6324"];
  function classColour(cls, order) { return CLASS_COLOURS[cls] || PALETTE[order.indexOf(cls) % PALETTE.length]; }
  function townName(code) { var x = state.towns.filter(function (tw) { return tw.code === code; })[0]; return x ? x.name : code; }
  function runConflict() {
    var inputs = { rule_set: $("rule-set").value, min_area: parseFloat($("min-area").value || "1") };
    if ($("conflict-aoi").value) inputs.aoi = $("conflict-aoi").value;
    $("conflict-run").disabled = true; $("conflict-result").innerHTML = "";
    runJob("conflict-check", inputs, $("conflict-progress")).then(function (job) {
      return Promise.all([apiJSON(job + "/results/patches"), apiJSON(job + "/results/summary")]).then(function (r) { showConflict(r[0], r[1]); });
    }).catch(function (err) { toast(err.message); }).then(function () { $("conflict-run").disabled = false; });
  }
  function showConflict(patches, summary) {
    var order = Object.keys(summary.by_class || {});
    patches.features.forEach(function (f) { f.properties.colour = classColour(f.properties["class"], order); });
    state.lastConflict = { patches: patches, summary: summary };
    state.map.getSource("conflict").setData(patches);
    var rows = order.map(function (c) {
      var s = summary.by_class[c], a = s.area.planar;
      return '<tr data-class="' + esc(c) + '"><td><span class="swatch" style="background:' + classColour(c, order) + ";border-color:" + classColour(c, order) +
        '"></span> ' + esc(s.title || c) + '</td><td class="count">' + s.count + "</td><td>" + a.mu.toFixed(2) + "</td><td>" + a.ha.toFixed(4) + "</td></tr>";
    });
    var towns = Object.keys(summary.by_town || {}).map(function (code) {
      var byc = summary.by_town[code];
      return "<tr><td>" + esc(townName(code)) + "</td><td>" + order.filter(function (c) { return byc[c]; }).map(function (c) {
        return esc(c) + ": " + byc[c].mu.toFixed(2) + " " + esc(t("mu")); }).join("<br>") + "</td></tr>";
    });
    $("conflict-result").innerHTML = "<h4>" + esc(t("byClass")) + '</h4><table class="result" id="conflict-classes"><tr><th>' + esc(t("cls")) + "</th><th>" + esc(t("count")) +
      "</th><th>" + esc(t("mu")) + "</th><th>" + esc(t("ha")) + "</th></tr>" + rows.join("") + "</table><h4>" + esc(t("byTown")) +
      '</h4><table class="result"><tr><th>' + esc(t("town")) + "</th><th>" + esc(t("area")) + " (" + esc(t("planar")) + ")</th></tr>" + towns.join("") +
      '</table><button type="button" id="conflict-csv">' + esc(t("csv")) + "</button>";
    $("conflict-csv").onclick = exportCsv;
    if (patches.features.length) showFoundBounds(patches);
  }
  function showFoundBounds(fc) {
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    fc.features.forEach(function (f) { var x = bboxOf(f.geometry); b = [Math.min(b[0], x[0]), Math.min(b[1], x[1]), Math.max(b[2], x[2]), Math.max(b[3], x[3])]; });
    state.map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 40, maxZoom: 14, duration: 0 });
  }
  function csvCell(v) { v = v == null ? "" : String(v); return /[",\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
  function exportCsv() {
    var c = state.lastConflict; if (!c) return;
    var lines = [["类别", "类别名称", "图层", "标识码", "乡镇", "平面面积(m²)", "平面面积(亩)", "平面面积(公顷)", "椭球面积(m²)"].join(",")];
    c.patches.features.forEach(function (f) {
      var p = f.properties;
      lines.push([p["class"], p.class_title, (p.layers || []).join(" / "), (p.bsm || []).join(" / "),
                  (p.xzqdm || []).map(townName).join(" / "), p.area.planar.m2.toFixed(2), p.area.planar.mu.toFixed(4),
                  p.area.planar.ha.toFixed(6), p.area.ellipsoidal.m2.toFixed(2)].map(csvCell).join(","));
    });
    saveBlob(new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" }), "差异图斑.csv");
  }

  // ---- CGCS2000 graticule (lon/lat lines; MapLibre itself draws Web Mercator only) ----------------------------------
  function graticule(on) {
    var feats = [];
    if (on) {
      for (var x = 112.5; x <= 114.0001; x += 0.1) feats.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: [[x, 27.5], [x, 29.2]] } });
      for (var y = 27.5; y <= 29.2001; y += 0.1) feats.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: [[112.5, y], [114.0, y]] } });
    }
    state.map.getSource("graticule").setData({ type: "FeatureCollection", features: feats });
  }

  // ---- start ----------------------------------------------------------------------------------------------------------
  function addOverlays(map) {
    var empty = { type: "FeatureCollection", features: [] };
    ["found", "site", "hits", "conflict", "graticule"].forEach(function (s) { map.addSource(s, { type: "geojson", data: empty }); });
    map.addLayer({ id: "graticule", type: "line", source: "graticule", paint: { "line-color": "#5078a0", "line-width": 0.6, "line-dasharray": [4, 4] } });
    map.addLayer({ id: "conflict-fill", type: "fill", source: "conflict", paint: { "fill-color": ["get", "colour"], "fill-opacity": 0.75 } });
    map.addLayer({ id: "conflict-line", type: "line", source: "conflict", paint: { "line-color": "#333333", "line-width": 1.5 } });
    map.addLayer({ id: "hits-line", type: "line", source: "hits", paint: { "line-color": "#ff00ff", "line-width": 2.5 } });
    map.addLayer({ id: "found-line", type: "line", source: "found", paint: { "line-color": "#00c0ff", "line-width": 3 } });
    map.addLayer({ id: "site-fill", type: "fill", source: "site", filter: ["==", ["geometry-type"], "Polygon"], paint: { "fill-color": "#ff0000", "fill-opacity": 0.1 } });
    map.addLayer({ id: "site-line", type: "line", source: "site", paint: { "line-color": "#ff0000", "line-width": 2.5 } });
  }
  function start(cfg, extent) {
    state.config = cfg;
    var style = buildStyle(cfg);
    // ?layers=id,id turns layers on at start (links and embedding); the view is in the URL hash (#zoom/lat/lon)
    var asked = new URLSearchParams(location.search).get("layers");
    var on = asked ? asked.split(",") : [];
    Object.keys(state.layers).forEach(function (id) {
      if (state.visible[id] == null) state.visible[id] = !!state.layers[id].default_on || on.indexOf(id) >= 0;
    });
    var map = new maplibregl.Map({
      container: "map", style: style, bounds: extent, fitBoundsOptions: { padding: 20 }, maxZoom: 19, hash: true,
      attributionControl: { compact: true, customAttribution: "蓝图 Lantu · 演示数据为合成数据" },
      transformRequest: function (url) { return sameOrigin(url) ? { url: url, headers: authHeaders() } : { url: url }; }
    });
    state.map = map;
    window.lantuViewer = { map: map, state: state, setVisible: setVisible, setOpacity: setOpacity };
    map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
    map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
    map.on("load", function () {
      Object.keys(state.layers).forEach(function (id) {
        var l = state.layers[id];
        if (l.style.hatch) map.addImage("hatch-" + id, hatchImage(l));
      });
      addOverlays(map);
      buildTree();
      Object.keys(state.layers).forEach(function (id) { setVisible(id, state.visible[id]); });
      document.body.dataset.ready = "1";
      map.once("idle", function () {  // first full render: every tile of the start view drawn (bench/viewer reads it)
        state.firstFullRender = performance.now();
        document.body.dataset.rendered = "1";
      });
    });
    map.on("zoomend", updateZoomNotes);
    map.on("mousemove", function (e) { $("coords").textContent = "CGCS2000 " + e.lngLat.lng.toFixed(6) + ", " + e.lngLat.lat.toFixed(6) + " · z" + map.getZoom().toFixed(1); });
    map.on("click", function (e) { if (state.drawing) drawClick(e); else identify(e); });
  }
  function loadTowns() {
    var cfg = state.config;
    return apiJSON("collections/" + cfg.county_layer + "/items?f=json&limit=200&skipGeometry=true&sortby=" + cfg.town_fields.code).then(function (fc) {
      state.towns = fc.features.map(function (f) { return { code: f.properties[cfg.town_fields.code], name: f.properties[cfg.town_fields.name] }; });
      $("conflict-aoi").innerHTML = '<option value="" data-i18n="wholeCounty">' + esc(t("wholeCounty")) + "</option>" + state.towns.map(function (tw) {
        return '<option value="' + esc(tw.code) + '">' + esc(tw.name) + "</option>"; }).join("");
    }, function () {});
  }
  function wire() {
    $("lang").onclick = function () { state.lang = state.lang === "en" ? "zh" : "en"; localStorage.setItem("lantu.lang", state.lang); applyLang(); };
    $("panel-toggle").onclick = function () { var s = $("side"); s.classList.toggle("collapsed"); this.setAttribute("aria-expanded", !s.classList.contains("collapsed")); if (state.map) state.map.resize(); };
    $("identity-toggle").onclick = function () { $("identity").hidden = !$("identity").hidden; if (state.map) state.map.resize(); };
    $("identity").onsubmit = function (e) { e.preventDefault(); state.key = $("identity-key").value.trim(); sessionStorage.setItem("lantu.key", state.key); applyIdentity(); };
    $("identity-clear").onclick = function () { state.key = ""; $("identity-key").value = ""; sessionStorage.removeItem("lantu.key"); applyIdentity(); };
    $("search").onsubmit = search;
    $("tabs").onclick = function (e) {
      var b = e.target.closest("button[data-tab]"); if (!b) return;
      document.querySelectorAll("#tabs button").forEach(function (x) { x.setAttribute("aria-selected", x === b); });
      document.querySelectorAll(".tab").forEach(function (s) { s.hidden = s.id !== "tab-" + b.dataset.tab; });
    };
    $("tree").addEventListener("change", function (e) {
      if (e.target.dataset.toggle) setVisible(e.target.dataset.toggle, e.target.checked);
    });
    $("tree").addEventListener("input", function (e) { if (e.target.dataset.opacity) setOpacity(e.target.dataset.opacity, +e.target.value); });
    $("graticule").onchange = function () { graticule(this.checked); };
    $("draw-start").onclick = startDraw;
    $("draw-finish").onclick = finishDraw;
    $("draw-clear").onclick = function () { state.drawing = null; $("site-file").value = ""; setSite(null, ""); state.map.getSource("hits").setData({ type: "FeatureCollection", features: [] }); };
    $("site-file").onchange = function () { if (this.files[0]) readFile(this.files[0]).catch(function (err) { toast(err.message); }); };
    $("check-run").onclick = runCheck;
    $("conflict-run").onclick = runConflict;
    $("identity-key").value = state.key;
  }

  wire();
  applyLang();
  if (typeof maplibregl === "undefined") { $("map").textContent = "地图组件未安装 (MapLibre GL JS not installed: run make install)"; return; }
  apiJSON("viewer/config.json").then(function (cfg) { state.config = cfg; return loadAllowed(); }).then(function () {
    var cfg = state.config;
    return apiJSON("collections/" + cfg.county_layer + "?f=json").then(function (c) {
      var b = c.extent.spatial.bbox[0]; return [[b[0], b[1]], [b[2], b[3]]];
    }, function () { return [[73, 18], [135, 54]]; }).then(function (extent) { start(cfg, extent); loadTowns(); });
  }).catch(function (err) {
    if (err.status === 401 || err.status === 403) { showIdentity(t("badKey") + ": " + err.message, true); $("identity").hidden = false; }
    toast(err.message);
  });
})();
