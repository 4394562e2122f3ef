// What changed between two JSON values: a list of {path, kind, before, after}
// where kind is "added", "removed" or "changed". Objects are compared key by
// key; arrays element by element (an append shows as added elements); any
// other difference is a change of the whole value. Written here rather than
// taken from a library: it is forty lines and the console has no build step.
export function jsonDiff(before, after, path = "") {
  const out = [];
  walk(before, after, path, out);
  return out;
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function walk(a, b, path, out) {
  if (isObject(a) && isObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of [...keys].sort()) {
      const p = path ? path + "." + k : k;
      if (!(k in b)) out.push({ path: p, kind: "removed", before: a[k] });
      else if (!(k in a)) out.push({ path: p, kind: "added", after: b[k] });
      else walk(a[k], b[k], p, out);
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i++) {
      const p = path + "[" + i + "]";
      if (i >= b.length) out.push({ path: p, kind: "removed", before: a[i] });
      else if (i >= a.length) out.push({ path: p, kind: "added", after: b[i] });
      else walk(a[i], b[i], p, out);
    }
    return;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path: path || "(whole state)", kind: "changed", before: a, after: b });
}
