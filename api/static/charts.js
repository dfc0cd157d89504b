/* Draw the charts of a fairvalue page with the vendored Chart.js.
   The server embeds the data as JSON in <script id="chart-data">; each <canvas data-chart="kind">
   is drawn by the builder of that kind. A drawn canvas gets data-rendered="1" (the browser tests
   look for it). Times arrive as ISO strings and are plotted as epoch milliseconds on a linear axis,
   so no date adapter is needed. */
(function () {
  "use strict";
  var COLORS = { model: "#2f6fb2", band: "rgba(47,111,178,0.15)", sale: "#e07b39", floor: "#6b7785",
                 index: "#17804f", strategy: "#2f6fb2", buyAll: "#9aa5b1", naive: "#e07b39", bad: "#b3261e" };

  function ms(iso) { return Date.parse(iso.length === 10 ? iso + "T00:00:00Z" : iso); }
  function day(value) { return new Date(value).toISOString().slice(0, 10); }
  function pct(value) { return (value * 100).toFixed(1) + " %"; }
  function xy(rows, x, y) {
    return rows.filter(function (r) { return r[y] !== null && r[y] !== undefined; })
               .map(function (r) { return { x: x === null ? r[0] : ms(r[x]), y: r[y] }; });
  }
  var DAY = 86400000;
  // Ticks on calendar boundaries (month starts for long ranges, Mondays for short ones) instead of
  // the arbitrary millisecond steps a linear axis would pick; the axis spans the data exactly.
  function calendarTicks(scale) {
    var span = scale.max - scale.min, ticks = [], t = new Date(scale.min), step;
    var most = Math.max(2, Math.floor((scale.width || 600) / 85));  // labels must not overlap on a phone
    if (span > 3 * 365 * DAY) {  // whole years
      step = Math.max(1, Math.ceil(span / (365.25 * DAY) / most));
      for (var y = t.getUTCFullYear() + 1; Date.UTC(y, 0, 1) <= scale.max; y += step) {
        ticks.push({ value: Date.UTC(y, 0, 1) });
      }
    } else if (span > 75 * DAY) {  // month starts
      step = Math.max(1, Math.ceil(span / (30.4 * DAY) / most));
      t = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth() + 1, 1));
      for (; t.getTime() <= scale.max; t = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth() + step, 1))) {
        ticks.push({ value: t.getTime() });
      }
    } else {
      step = Math.max(1, Math.ceil(span / (7 * DAY) / most)) * 7 * DAY;
      var first = Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate());
      first += ((8 - new Date(first).getUTCDay()) % 7) * DAY;
      for (var v = first; v <= scale.max; v += step) { ticks.push({ value: v }); }
    }
    scale.ticks = ticks;
  }
  function timeAxis() {
    return { type: "linear", bounds: "data", grace: 0, afterBuildTicks: calendarTicks,
             ticks: { maxRotation: 0, callback: function (v) {
               var s = day(v), span = this.max - this.min;
               return span > 3 * 365 * DAY ? s.slice(0, 4) : span > 75 * DAY ? s.slice(0, 7) : s.slice(5);
             } } };
  }
  function bounded(axis, datasets) {
    var xs = [];
    datasets.forEach(function (d) { d.data.forEach(function (p) { xs.push(p.x); }); });
    if (xs.length) { axis.min = Math.min.apply(null, xs); axis.max = Math.max.apply(null, xs); }
    return axis;
  }
  function tooltipDay() {
    return { callbacks: { title: function (items) { return items.length ? day(items[0].parsed.x) : ""; } } };
  }
  function line(label, data, color, extra) {
    return Object.assign({ type: "line", label: label, data: data, borderColor: color, backgroundColor: color,
                           pointRadius: 0, borderWidth: 2, tension: 0 }, extra || {});
  }

  var builders = {
    market: function (d) {
      var labels = d.labels || ["floor", "sales index"];
      var sets = [line(labels[0], xy(d.days, 0, 1), COLORS.floor), line(labels[1], xy(d.days, 0, 2), COLORS.index)]
        .filter(function (s) { return s.data.length; });  // no empty legend entry (the cards have no second line)
      return { type: "line", data: { datasets: sets },
        options: { scales: { x: bounded(timeAxis(), sets), y: { title: { display: true, text: d.currency } } },
                   plugins: { tooltip: tooltipDay() } } };
    },
    item: function (d) {
      var pub = d.published.map(function (r) { return [r[0], r[1], r[2], r[3]]; });
      var single = pub.length < 2 ? 4 : 0;
      var sets = [
          line("p10–p90 band", xy(pub, 0, 3), "rgba(47,111,178,0.35)", { borderWidth: 1, pointRadius: single,
                                                                          fill: "+1", backgroundColor: COLORS.band }),
          line("p10", xy(pub, 0, 2), "rgba(47,111,178,0.35)", { borderWidth: 1, pointRadius: single, fill: false }),
          line("published fair value", xy(pub, 0, 1), COLORS.model, { pointRadius: single || 1.5 }),
          { type: "scatter", label: "sales", data: xy(d.sales, 0, 1), backgroundColor: COLORS.sale,
            borderColor: COLORS.sale, pointRadius: 3.5 }];
      return { type: "scatter", data: { datasets: sets },
        options: { scales: { x: bounded(timeAxis(), sets), y: { type: "logarithmic", title: { display: true, text: d.currency } } },
                   plugins: { tooltip: tooltipDay(),
                              legend: { labels: { filter: function (item) { return item.text !== "p10"; } } } } } };
    },
    "perf-series": function (d) {
      return { type: "line", data: { datasets: [
          line("MAPE", xy(d.series, 0, 1), COLORS.model, { pointRadius: 2, yAxisID: "y" }),
          line("median APE", xy(d.series, 0, 2), COLORS.index, { pointRadius: 2, yAxisID: "y" }),
          { type: "bar", label: "scored sales", data: xy(d.series, 0, 3), backgroundColor: "rgba(154,165,177,0.35)",
            yAxisID: "n", barPercentage: 1, categoryPercentage: 1, order: 10 }] },
        options: { scales: { x: Object.assign(timeAxis(), { offset: true }),
                             y: { beginAtZero: true, ticks: { callback: pct }, title: { display: true, text: "forward error" } },
                             n: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                                  title: { display: true, text: "sales" } } },
                   plugins: { tooltip: tooltipDay() } } };
    },
    "perf-segments": function (d) {
      return { type: "bar", data: { labels: d.segments.map(function (s) { return s[0] + " (" + s[2] + ")"; }),
                                    datasets: [{ label: "MAPE", data: d.segments.map(function (s) { return s[1]; }),
                                                 backgroundColor: COLORS.model }] },
        options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { callback: pct, maxRotation: 0, maxTicksLimit: 6 } } },
                   plugins: { legend: { display: false } } } };
    },
    "perf-scatter": function (d) {
      var values = d.points.map(function (p) { return p[0]; }).concat(d.points.map(function (p) { return p[1]; }));
      var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
      return { type: "scatter", data: { datasets: [
          { label: "sales", data: d.points.map(function (p) { return { x: p[0], y: p[1] }; }),
            backgroundColor: "rgba(47,111,178,0.35)", pointRadius: 2 },
          line("price = fair value", [{ x: lo, y: lo }, { x: hi, y: hi }], COLORS.bad, { borderWidth: 1 })] },
        options: { scales: { x: { type: "logarithmic", ticks: { maxRotation: 0, autoSkipPadding: 12 },
                                  title: { display: true, text: "published fair value (" + d.currency + ")" } },
                             y: { type: "logarithmic", title: { display: true, text: "sale price (" + d.currency + ")" } } } } };
    },
    equity: function (d) {
      var sets = [line("strategy", xy(d.strategy.equity, 0, 1), COLORS.strategy, { order: 1 }),
                  line("buy-all", xy(d.buy_all.equity, 0, 1), COLORS.buyAll, { order: 3, borderDash: [6, 4] })];
      if (d.below_market) {  // the naive baseline; the cards' backtest has none
        sets.push(line("below market (no model)", xy(d.below_market.equity, 0, 1), COLORS.naive, { order: 2, borderDash: [2, 3] }));
      }
      return { type: "line", data: { datasets: sets },
        options: { scales: { x: timeAxis(), y: { title: { display: true, text: "value of 1 invested" } } },
                   plugins: { tooltip: tooltipDay() } } };
    },
    drawdown: function (d) {
      function neg(rows) { return xy(rows, 0, 1).map(function (p) { return { x: p.x, y: -p.y }; }); }
      var sets = [line("strategy", neg(d.strategy.drawdown), COLORS.strategy, { order: 1, fill: "origin",
                                                                               backgroundColor: "rgba(47,111,178,0.2)" }),
                  line("buy-all", neg(d.buy_all.drawdown), COLORS.buyAll, { order: 3, borderDash: [6, 4], fill: "origin",
                                                                          backgroundColor: "rgba(154,165,177,0.2)" })];
      if (d.below_market) {
        sets.push(line("below market (no model)", neg(d.below_market.drawdown), COLORS.naive, { order: 2, borderDash: [2, 3] }));
      }
      return { type: "line", data: { datasets: sets },
        options: { scales: { x: timeAxis(), y: { ticks: { callback: pct } } }, plugins: { tooltip: tooltipDay() } } };
    },
    versions: function (d) {
      return { type: "bar", data: { labels: d.versions.map(function (v) { return "v" + v[0]; }), datasets: [
          { label: "model", data: d.versions.map(function (v) { return v[1]; }), backgroundColor: COLORS.model },
          { label: d.baseline, data: d.versions.map(function (v) { return v[2]; }), backgroundColor: COLORS.buyAll }] },
        options: { scales: { y: { beginAtZero: true, ticks: { callback: pct } } } } };
    },
    queues: function (d) {
      return { type: "bar", data: { labels: d.queues.map(function (q) { return q[0]; }),
                                    datasets: [{ label: "waiting", data: d.queues.map(function (q) { return q[1]; }),
                                                 backgroundColor: COLORS.model }] },
        options: { scales: { y: { beginAtZero: true, suggestedMax: 5, ticks: { precision: 0 } } },
                   plugins: { legend: { display: false } } } };
    }
  };

  function draw() {
    var holder = document.getElementById("chart-data");
    if (!holder || typeof Chart === "undefined") { return; }
    var data = JSON.parse(holder.textContent);
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var build = builders[canvas.dataset.chart];
      if (!build) { throw new Error("no chart builder for " + canvas.dataset.chart); }
      new Chart(canvas, build(data));
      canvas.dataset.rendered = "1";
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
}());
