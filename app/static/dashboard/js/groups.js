// Group elements applied to inputs in the browser, for the invariance check: a model of group G
// gives g.x the log-density of x for every g in G. Images use only elements that act exactly on
// the pixel grid (quarter turns and flips), points any rotation or reflection.

/** The group's kind and order: "C8" -> ["C", 8], "SO2" -> ["SO2", Infinity], "trivial" -> ["C", 1]. */
export function parseGroup(name) {
  if (name === "trivial") return ["C", 1];
  if (name === "SO2" || name === "O2") return [name, Infinity];
  const match = /^([CD])(\d+)$/.exec(name);
  return match ? [match[1], Number(match[2])] : ["C", 1];
}

function rotatePoint([x, y], angle) {
  const [c, s] = [Math.cos(angle), Math.sin(angle)];
  return [c * x - s * y, s * x + c * y];
}
const reflectPoint = ([x, y]) => [x, -y];

/** [{name, inGroup, apply(point)}] for 2-D points: the group's elements (at most 8 rotations),
 * and, for a negative control, a rotation and a reflection outside it. */
export function pointTransforms(group) {
  const [kind, order] = parseGroup(group);
  const reflections = kind === "D" || kind === "O2";
  const angles = Number.isFinite(order)
    ? Array.from({ length: Math.min(order, 8) }, (_, k) => (2 * Math.PI * k) / order)
    : [0, 0.5, 1.2, Math.PI / 2, 2.6, 4.0];
  const degrees = (angle) => `${Math.round((angle * 180) / Math.PI)}°`;
  const transforms = angles.map((angle) => ({
    name: angle === 0 ? "identity" : `rotate ${degrees(angle)}`,
    inGroup: true,
    apply: (p) => rotatePoint(p, angle),
  }));
  if (reflections) {
    for (const angle of angles.slice(0, 4)) {
      transforms.push({ name: `reflect, rotate ${degrees(angle)}`, inGroup: true, apply: (p) => rotatePoint(reflectPoint(p), angle) });
    }
  }
  if (Number.isFinite(order)) {
    const outside = Math.PI / (2 * Math.max(order, 2)) + 0.3;
    transforms.push({ name: `rotate ${degrees(outside)}`, inGroup: false, apply: (p) => rotatePoint(p, outside) });
    if (!reflections) transforms.push({ name: "reflect (y → −y)", inGroup: false, apply: reflectPoint });
  }
  return transforms;
}

const map3 = (image, f) => image.map((channel) => f(channel));
const rot90 = (m) => m[0].map((_, j) => m.map((row) => row[row.length - 1 - j]));
const flipRows = (m) => [...m].reverse();
const flipColumns = (m) => m.map((row) => [...row].reverse());

/** [{name, inGroup, apply(image)}] for (C, H, W) images: identity, quarter turns, flips. */
export function imageTransforms(group, square) {
  const [kind, order] = parseGroup(group);
  const continuous = !Number.isFinite(order);
  const quarter = square && (continuous || order % 4 === 0);
  const half = continuous || order % 2 === 0;
  const flips = kind === "O2" || (kind === "D" && order % 2 === 0);
  const transforms = [{ name: "identity", inGroup: true, apply: (x) => x }];
  if (square) {
    transforms.push({ name: "rotate 90°", inGroup: quarter, apply: (x) => map3(x, rot90) });
  }
  transforms.push({ name: "rotate 180°", inGroup: half, apply: (x) => map3(x, (m) => flipRows(flipColumns(m))) });
  if (square) {
    transforms.push({ name: "rotate 270°", inGroup: quarter, apply: (x) => map3(x, (m) => rot90(rot90(rot90(m)))) });
  }
  transforms.push({ name: "flip left-right", inGroup: flips, apply: (x) => map3(x, flipColumns) });
  transforms.push({ name: "flip up-down", inGroup: flips, apply: (x) => map3(x, flipRows) });
  return transforms;
}
