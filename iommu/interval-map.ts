// A B+tree of disjoint half-open intervals [start, end) keyed by start (a
// number). Lookup, insert and remove are O(log n) with a fan-out of 64, so a
// 65,535-entry IOAS is three levels deep; leaves are linked for range walks.
// Keys sit in plain double arrays (unboxed by V8, and faster to index than
// one Float64Array per node), so a lookup is three short binary searches:
// this is the translation fast path.

export interface Interval {
  start: number;
  end: number;
}

const B = 64; // max entries per node
const MIN = B >> 2; // a non-root node below this borrows or merges

class Leaf<V extends Interval> {
  n = 0;
  readonly keys = new Array<number>(B).fill(0.5) // 0.5: keep the elements kind double;
  readonly vals: (V | undefined)[] = new Array(B).fill(undefined);
  next: Leaf<V> | null = null;
}

class Inner<V extends Interval> {
  n = 0;
  /** keys[i] is the smallest start in kids[i]'s subtree. */
  readonly keys = new Array<number>(B).fill(0.5) // 0.5: keep the elements kind double;
  readonly kids: (Node<V> | undefined)[] = new Array(B).fill(undefined);
}

type Node<V extends Interval> = Leaf<V> | Inner<V>;

/** Index of the last key <= x, or -1. */
function floorIdx(keys: number[], n: number, x: number): number {
  let lo = 0;
  let hi = n - 1;
  let r = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid] <= x) {
      r = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return r;
}

export class IntervalMap<V extends Interval> {
  private root: Node<V> = new Leaf<V>();
  /** Number of inner levels above the leaves. */
  private height = 0;
  private count = 0;
  // Path of the last descent (reused: no allocation per operation).
  private readonly pathN: Node<V>[] = [];
  private readonly pathI: number[] = [];

  get size(): number {
    return this.count;
  }

  /** The interval containing x, if any. */
  find(x: number): V | undefined {
    let node = this.root;
    for (let h = this.height; h > 0; h--) {
      const inner = node as Inner<V>;
      const keys = inner.keys;
      let lo = 0;
      let hi = inner.n - 1;
      let r = 0;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (keys[mid] <= x) {
          r = mid;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      node = inner.kids[r] as Node<V>;
    }
    const leaf = node as Leaf<V>;
    const keys = leaf.keys;
    let lo = 0;
    let hi = leaf.n - 1;
    let r = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (keys[mid] <= x) {
        r = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (r < 0) return undefined;
    const v = leaf.vals[r] as V;
    return x < v.end ? v : undefined;
  }

  /**
   * Calls fn for each interval with end > x, in order, until fn returns false.
   */
  forEachFrom(x: number, fn: (v: V) => boolean | void): void {
    const leaf = this.descend(x);
    let j = floorIdx(leaf.keys, leaf.n, x);
    if (j < 0 || (leaf.vals[j] as V).end <= x) j++;
    let l: Leaf<V> | null = leaf;
    while (l) {
      for (; j < l.n; j++) if (fn(l.vals[j] as V) === false) return;
      l = l.next;
      j = 0;
    }
  }

  /** Intervals that intersect [lo, hiIncl], in order. */
  collect(lo: number, hiIncl: number, out: V[] = []): V[] {
    this.forEachFrom(lo, (v) => {
      if (v.start > hiIncl) return false;
      out.push(v);
      return true;
    });
    return out;
  }

  *[Symbol.iterator](): IterableIterator<V> {
    let node = this.root;
    for (let h = this.height; h > 0; h--) node = (node as Inner<V>).kids[0] as Node<V>;
    for (let l: Leaf<V> | null = node as Leaf<V>; l; l = l.next) {
      for (let j = 0; j < l.n; j++) yield l.vals[j] as V;
    }
  }

  clear(): void {
    this.root = new Leaf<V>();
    this.height = 0;
    this.count = 0;
  }

  /** Insert v; the caller has checked that it overlaps nothing. */
  insert(v: V): void {
    const x = v.start;
    const leaf = this.descend(x);
    const depth = this.height;
    const j = floorIdx(leaf.keys, leaf.n, x) + 1;
    this.count++;
    if (leaf.n < B) {
      leafInsertAt(leaf, j, x, v);
      if (j === 0) this.fixMin(depth);
      return;
    }
    // Split the full leaf in two halves, then insert into the proper half.
    const right = new Leaf<V>();
    const half = B >> 1;
    for (let k = half; k < B; k++) {
      right.keys[k - half] = leaf.keys[k];
      right.vals[k - half] = leaf.vals[k];
      leaf.vals[k] = undefined;
    }
    right.n = B - half;
    leaf.n = half;
    right.next = leaf.next;
    leaf.next = right;
    if (j <= half) leafInsertAt(leaf, j, x, v);
    else leafInsertAt(right, j - half, x, v);
    if (j === 0) this.fixMin(depth);
    this.insertIntoParent(depth, right);
  }

  /** Remove the interval that starts at x; returns it, or undefined. */
  remove(x: number): V | undefined {
    const leaf = this.descend(x);
    const depth = this.height;
    const j = floorIdx(leaf.keys, leaf.n, x);
    if (j < 0 || leaf.keys[j] !== x) return undefined;
    const v = leaf.vals[j] as V;
    leafRemoveAt(leaf, j);
    this.count--;
    if (depth === 0) return v;
    if (leaf.n >= MIN) {
      if (j === 0) this.fixMin(depth);
      return v;
    }
    this.rebalance(depth);
    return v;
  }

  // Descends to the leaf that would hold x, recording the path.
  private descend(x: number): Leaf<V> {
    let node = this.root;
    let d = 0;
    for (let h = this.height; h > 0; h--, d++) {
      const inner = node as Inner<V>;
      let i = floorIdx(inner.keys, inner.n, x);
      if (i < 0) i = 0;
      this.pathN[d] = inner;
      this.pathI[d] = i;
      node = inner.kids[i] as Node<V>;
    }
    this.pathN[d] = node;
    return node as Leaf<V>;
  }

  // The node at path depth d changed its smallest key: update ancestors.
  private fixMin(d: number): void {
    for (let l = d - 1; l >= 0; l--) {
      const parent = this.pathN[l] as Inner<V>;
      const i = this.pathI[l];
      const m = (this.pathN[l + 1] as Node<V>).keys[0];
      if (parent.keys[i] === m) return;
      parent.keys[i] = m;
      if (i !== 0) return;
    }
  }

  // pathN[d] was split; `right` goes beside it in the parent.
  private insertIntoParent(d: number, right: Node<V>): void {
    if (d === 0) {
      const root = new Inner<V>();
      const left = this.pathN[0] as Node<V>;
      root.keys[0] = left.keys[0];
      root.kids[0] = left;
      root.keys[1] = right.keys[0];
      root.kids[1] = right;
      root.n = 2;
      this.root = root;
      this.height++;
      return;
    }
    const parent = this.pathN[d - 1] as Inner<V>;
    const at = this.pathI[d - 1] + 1;
    if (parent.n < B) {
      innerInsertAt(parent, at, right);
      return;
    }
    const sib = new Inner<V>();
    const half = B >> 1;
    for (let k = half; k < B; k++) {
      sib.keys[k - half] = parent.keys[k];
      sib.kids[k - half] = parent.kids[k];
      parent.kids[k] = undefined;
    }
    sib.n = B - half;
    parent.n = half;
    if (at <= half) innerInsertAt(parent, at, right);
    else innerInsertAt(sib, at - half, right);
    this.insertIntoParent(d - 1, sib);
  }

  // pathN[d] (not the root) fell below MIN entries: borrow or merge.
  private rebalance(d: number): void {
    const node = this.pathN[d] as Node<V>;
    const parent = this.pathN[d - 1] as Inner<V>;
    const idx = this.pathI[d - 1];
    const isLeaf = d === this.height;
    const left = idx > 0 ? (parent.kids[idx - 1] as Node<V>) : undefined;
    const right = idx + 1 < parent.n ? (parent.kids[idx + 1] as Node<V>) : undefined;
    if (left && left.n > MIN) {
      moveLastToFront(left, node, isLeaf);
      parent.keys[idx] = node.keys[0];
      return;
    }
    if (right && right.n > MIN) {
      moveFirstToBack(right, node, isLeaf);
      parent.keys[idx + 1] = right.keys[0];
      if (node.n > 0) {
        parent.keys[idx] = node.keys[0];
        if (idx === 0) this.fixMin(d - 1);
      }
      return;
    }
    if (left) {
      appendAll(left, node, isLeaf);
      innerRemoveAt(parent, idx);
    } else if (right) {
      appendAll(node, right, isLeaf);
      innerRemoveAt(parent, idx + 1);
      if (node.n > 0) {
        parent.keys[idx] = node.keys[0];
        if (idx === 0) this.fixMin(d - 1);
      }
    } else if (node.n === 0) {
      innerRemoveAt(parent, idx);
    }
    if (d - 1 === 0) {
      if (parent.n === 1) {
        this.root = parent.kids[0] as Node<V>;
        this.height--;
      } else if (parent.n === 0) {
        this.clear();
      }
      return;
    }
    if (parent.n < MIN) this.rebalance(d - 1);
    else if (parent.n > 0) this.fixMin(d - 1);
  }
}

function leafInsertAt<V extends Interval>(l: Leaf<V>, j: number, k: number, v: V): void {
  const keys = l.keys;
  const vals = l.vals;
  for (let i = l.n; i > j; i--) {
    keys[i] = keys[i - 1];
    vals[i] = vals[i - 1];
  }
  l.keys[j] = k;
  l.vals[j] = v;
  l.n++;
}

function leafRemoveAt<V extends Interval>(l: Leaf<V>, j: number): void {
  const keys = l.keys;
  const vals = l.vals;
  for (let i = j; i < l.n - 1; i++) {
    keys[i] = keys[i + 1];
    vals[i] = vals[i + 1];
  }
  l.n--;
  l.vals[l.n] = undefined;
}

function innerInsertAt<V extends Interval>(p: Inner<V>, j: number, kid: Node<V>): void {
  for (let i = p.n; i > j; i--) {
    p.keys[i] = p.keys[i - 1];
    p.kids[i] = p.kids[i - 1];
  }
  p.keys[j] = kid.keys[0];
  p.kids[j] = kid;
  p.n++;
}

function innerRemoveAt<V extends Interval>(p: Inner<V>, j: number): void {
  for (let i = j; i < p.n - 1; i++) {
    p.keys[i] = p.keys[i + 1];
    p.kids[i] = p.kids[i + 1];
  }
  p.n--;
  p.kids[p.n] = undefined;
}

function slot<V extends Interval>(n: Node<V>, isLeaf: boolean): (V | Node<V> | undefined)[] {
  return isLeaf ? (n as Leaf<V>).vals : (n as Inner<V>).kids;
}

function moveLastToFront<V extends Interval>(from: Node<V>, to: Node<V>, isLeaf: boolean): void {
  const fs = slot(from, isLeaf);
  const ts = slot(to, isLeaf);
  for (let i = to.n; i > 0; i--) {
    to.keys[i] = to.keys[i - 1];
    ts[i] = ts[i - 1];
  }
  from.n--;
  to.keys[0] = from.keys[from.n];
  ts[0] = fs[from.n];
  fs[from.n] = undefined;
  to.n++;
}

function moveFirstToBack<V extends Interval>(from: Node<V>, to: Node<V>, isLeaf: boolean): void {
  const fs = slot(from, isLeaf);
  const ts = slot(to, isLeaf);
  to.keys[to.n] = from.keys[0];
  ts[to.n] = fs[0];
  to.n++;
  for (let i = 0; i < from.n - 1; i++) {
    from.keys[i] = from.keys[i + 1];
    fs[i] = fs[i + 1];
  }
  from.n--;
  fs[from.n] = undefined;
}

/** Moves every entry of `from` to the end of `to` (its left neighbour). */
function appendAll<V extends Interval>(to: Node<V>, from: Node<V>, isLeaf: boolean): void {
  const fs = slot(from, isLeaf);
  const ts = slot(to, isLeaf);
  for (let i = 0; i < from.n; i++) {
    to.keys[to.n + i] = from.keys[i];
    ts[to.n + i] = fs[i];
    fs[i] = undefined;
  }
  to.n += from.n;
  from.n = 0;
  if (isLeaf) (to as Leaf<V>).next = (from as Leaf<V>).next;
}
