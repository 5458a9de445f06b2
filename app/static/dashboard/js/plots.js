// Pictures: metric curves (uPlot), scatter plots with an optional density heatmap, image grids.

const COLORS = ["#1f5ab4", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5c940d", "#e67700"];
export const color = (index) => COLORS[index % COLORS.length];

/**
 * A line chart of series over steps in `target`: `series` is [{label, points: [[step, y]...]}].
 * Steps of all series are merged (uPlot wants one x array); a series has gaps elsewhere.
 * Answers {update(series)} to redraw with new points while a job trains.
 */
export function lineChart(target, { title, series, yLabel = "" }) {
  const build = (list) => {
    const steps = [...new Set(list.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b);
    const index = new Map(steps.map((step, i) => [step, i]));
    const columns = list.map((s) => {
      const column = new Array(steps.length).fill(null);
      for (const [x, y] of s.points) column[index.get(x)] = Number.isFinite(y) ? y : null;
      return column;
    });
    return [steps, ...columns];
  };
  const width = Math.max(320, target.clientWidth || 640);
  const options = {
    title,
    width,
    height: 300,
    scales: { x: { time: false } },
    axes: [{ label: "step" }, { label: yLabel, size: 70 }],
    series: [{ label: "step" }, ...series.map((s, i) => ({ label: s.label, stroke: color(i), width: 2, spanGaps: true, points: { size: 5 } }))],
  };
  let plot = new uPlot(options, build(series), target);
  let labels = series.map((s) => s.label).join("\n");
  return {
    plot: () => plot,
    update(next) {
      const nextLabels = next.map((s) => s.label).join("\n");
      if (nextLabels !== labels) {
        // Other series: build a new chart rather than patch the old one's series.
        plot.destroy();
        labels = nextLabels;
        options.series = [{ label: "step" }, ...next.map((s, i) => ({ label: s.label, stroke: color(i), width: 2, spanGaps: true, points: { size: 5 } }))];
        plot = new uPlot(options, build(next), target);
      } else {
        plot.setData(build(next));
      }
    },
  };
}

// A perceptually ordered colour map (viridis, 6 stops), for densities.
const VIRIDIS = [[68, 1, 84], [65, 68, 135], [42, 120, 142], [34, 168, 132], [122, 209, 81], [253, 231, 37]];
export function viridis(t) {
  const x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

/** The square [-r, r]^2 that holds the central 99% of the points, with a margin. */
export function squareAround(points) {
  const extent = points.map(([x, y]) => Math.max(Math.abs(x), Math.abs(y))).filter(Number.isFinite).sort((a, b) => a - b);
  const r = extent.length ? extent[Math.floor(0.99 * (extent.length - 1))] : 1;
  return Math.max(r * 1.15, 1e-6);
}

/** The centres of a size x size grid over [-r, r]^2, row by row from the top. */
export function gridPoints(r, size) {
  const points = [];
  for (let row = 0; row < size; row++) {
    for (let column = 0; column < size; column++) {
      const x = -r + ((column + 0.5) * 2 * r) / size;
      const y = r - ((row + 0.5) * 2 * r) / size;
      points.push([x, y]);
    }
  }
  return points;
}

/**
 * Draws points (first two coordinates) on `canvas` over [-r, r]^2, on top of a density heatmap
 * when `density` = {size, logProb} (row-major from the top, as gridPoints) is given.
 */
export function scatter(canvas, points, { r, density = null, pixels = 420 } = {}) {
  r ??= squareAround(points);
  canvas.width = canvas.height = pixels;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, pixels, pixels);
  if (density) {
    const finite = density.logProb.filter(Number.isFinite);
    const top = Math.max(...finite);
    const floor = top - 10; // ten nats of range: the modes and their surroundings
    const cell = pixels / density.size;
    density.logProb.forEach((value, i) => {
      const [red, green, blue] = viridis(Number.isFinite(value) ? (value - floor) / (top - floor) : 0);
      context.fillStyle = `rgb(${red},${green},${blue})`;
      const row = Math.floor(i / density.size);
      const column = i % density.size;
      context.fillRect(column * cell, row * cell, Math.ceil(cell), Math.ceil(cell));
    });
  }
  context.strokeStyle = density ? "rgba(255,255,255,.35)" : "#dde3ec";
  context.beginPath();
  context.moveTo(pixels / 2, 0);
  context.lineTo(pixels / 2, pixels);
  context.moveTo(0, pixels / 2);
  context.lineTo(pixels, pixels / 2);
  context.stroke();
  context.fillStyle = density ? "rgba(255,255,255,.85)" : "rgba(31,90,180,.75)";
  for (const [x, y = 0] of points) {
    const column = ((x + r) / (2 * r)) * pixels;
    const row = ((r - y) / (2 * r)) * pixels;
    context.beginPath();
    context.arc(column, row, 2, 0, 2 * Math.PI);
    context.fill();
  }
  return r;
}

/** Tiles uint8 images (N, C, H, W) on `canvas`, each pixel `scale` screen pixels, 1-pixel gaps. */
export function imageGrid(canvas, images, { scale = 6 } = {}) {
  const n = images.length;
  const [channels, height, width] = [images[0].length, images[0][0].length, images[0][0][0].length];
  const columns = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / columns);
  canvas.width = columns * (width * scale + 1) - 1;
  canvas.height = rows * (height * scale + 1) - 1;
  const context = canvas.getContext("2d");
  context.fillStyle = "#808080";
  context.fillRect(0, 0, canvas.width, canvas.height);
  images.forEach((image, index) => {
    const left = (index % columns) * (width * scale + 1);
    const top = Math.floor(index / columns) * (height * scale + 1);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const value = (c) => image[Math.min(c, channels - 1)][y][x];
        const rgb = channels >= 3 ? [value(0), value(1), value(2)] : [value(0), value(0), value(0)];
        context.fillStyle = `rgb(${rgb.join(",")})`;
        context.fillRect(left + x * scale, top + y * scale, scale, scale);
      }
    }
  });
}
