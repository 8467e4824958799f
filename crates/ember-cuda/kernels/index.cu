// index.cu: index-driven copies and the other data-movement kernels autograd needs on a GPU:
// index_select and gather (forward), their adjoints index_add and scatter_add (backward), the
// three-way select `where`, f32 <-> f64 casts, and the per-part copy of a concatenation.
//
// Layout convention (the same as ember-cpu's index.rs): the indexed axis is the middle one of
// `[outer, dim, inner]`; everything before it folds into `outer`, everything after into `inner`.
// Sources are read through a `View` (any strides, including transposes and broadcasts), at the
// row-major position `(o * dim + d) * inner + i` of the view's logical shape, so no operand
// needs a contiguous copy first. Outputs are contiguous.
//
// Indices arrive as i64, already validated by the host to lie in 0..dim (the host holds them:
// ember's indices are float tensors the core reads back to check they are whole numbers), so
// the kernels index without further checks.
//
// Determinism: the adjoints never use atomics. Each thread owns one output element and adds
// its contributions itself, in increasing index position, which is also the order ember-cpu's
// loops add them in, so the GPU result is bit-identical to the CPU's:
// - index_add: the host builds, for each d in 0..dim, the list of positions j with idx[j] == d
//   (a counting sort, CSR form: seg_off[dim + 1], seg_pos[n_idx]); the thread for (o, d, i)
//   walks only its own list, so the work is O(output + grad) whatever the index pattern.
// - scatter_add: the index varies per (o, i) column, so the thread for (o, d, i) scans the
//   n_ax positions of its column and adds those with idx == d: O(output * n_ax), which suits
//   gather's usual shapes (a few picks per row, as in a cross-entropy over class labels).

// Grid-stride loop over n items.
#define GRID_LOOP(k, n)                                                                            \
    for (i64 k = blockIdx.x * (i64)blockDim.x + threadIdx.x; k < (n);                              \
         k += (i64)gridDim.x * blockDim.x)

// out[o, j, i] = x[o, idx[j], i]; out is [outer, n_idx, inner], x is viewed as [outer, dim, inner].
template <typename T>
__device__ __forceinline__ void index_select_k(const T* __restrict__ x, View xv,
                                               const i64* __restrict__ idx, T* __restrict__ out,
                                               i64 n, i64 dim, i64 n_idx, i64 inner) {
    GRID_LOOP(k, n) {
        i64 i = k % inner;
        i64 r = k / inner;
        i64 j = r % n_idx;
        i64 o = r / n_idx;
        out[k] = x[view_offset(xv, (o * dim + idx[j]) * inner + i)];
    }
}

// out[o, d, i] = sum over j with idx[j] == d of g[o, j, i]; g is viewed as [outer, n_idx, inner].
template <typename T>
__device__ __forceinline__ void index_add_k(const T* __restrict__ g, View gv,
                                            const i64* __restrict__ seg_off,
                                            const i64* __restrict__ seg_pos, T* __restrict__ out,
                                            i64 n, i64 dim, i64 n_idx, i64 inner) {
    GRID_LOOP(k, n) {
        i64 i = k % inner;
        i64 r = k / inner;
        i64 d = r % dim;
        i64 o = r / dim;
        T acc = T(0);
        for (i64 s = seg_off[d]; s < seg_off[d + 1]; ++s)
            acc += g[view_offset(gv, (o * n_idx + seg_pos[s]) * inner + i)];
        out[k] = acc;
    }
}

// out[o, j, i] = x[o, idx[o, j, i], i]; idx and out are [outer, n_ax, inner] (idx contiguous).
template <typename T>
__device__ __forceinline__ void gather_k(const T* __restrict__ x, View xv,
                                         const i64* __restrict__ idx, T* __restrict__ out, i64 n,
                                         i64 dim, i64 n_ax, i64 inner) {
    GRID_LOOP(k, n) {
        i64 i = k % inner;
        i64 o = k / (n_ax * inner);
        out[k] = x[view_offset(xv, (o * dim + idx[k]) * inner + i)];
    }
}

// out[o, d, i] = sum over j with idx[o, j, i] == d of g[o, j, i], j increasing.
template <typename T>
__device__ __forceinline__ void scatter_add_k(const T* __restrict__ g, View gv,
                                              const i64* __restrict__ idx, T* __restrict__ out,
                                              i64 n, i64 dim, i64 n_ax, i64 inner) {
    GRID_LOOP(k, n) {
        i64 i = k % inner;
        i64 r = k / inner;
        i64 d = r % dim;
        i64 o = r / dim;
        T acc = T(0);
        i64 base = o * n_ax * inner + i;
        for (i64 j = 0; j < n_ax; ++j) {
            i64 p = base + j * inner;
            if (idx[p] == d) acc += g[view_offset(gv, p)];
        }
        out[k] = acc;
    }
}

// out[k] = c[k] != 0 ? a[k] : b[k] over three views of the output's shape (a NaN mask selects a,
// as on the CPU).
template <typename T>
__device__ __forceinline__ void where_k(const T* __restrict__ c, View cv, const T* __restrict__ a,
                                        View av, const T* __restrict__ b, View bv,
                                        T* __restrict__ out, i64 n) {
    GRID_LOOP(k, n) {
        out[k] = c[view_offset(cv, k)] != T(0) ? a[view_offset(av, k)] : b[view_offset(bv, k)];
    }
}

// out[k] = (D) x[view element k]; double -> float rounds to nearest even, like Rust's `as f32`.
template <typename S, typename D>
__device__ __forceinline__ void cast_k(const S* __restrict__ x, View xv, D* __restrict__ out,
                                       i64 n) {
    GRID_LOOP(k, n) { out[k] = (D)x[view_offset(xv, k)]; }
}

// One part of a concatenation: the part's element k (row-major, viewed as [outer, block]) goes
// to out[(k / block) * out_row + out_off + k % block].
template <typename T>
__device__ __forceinline__ void concat_part_k(const T* __restrict__ x, View xv,
                                              T* __restrict__ out, i64 n, i64 block, i64 out_row,
                                              i64 out_off) {
    GRID_LOOP(k, n) {
        i64 o = k / block;
        out[o * out_row + out_off + (k - o * block)] = x[view_offset(xv, k)];
    }
}

// ---- extern "C" entry points (names are what the host loads) -----------------------------------

#define EMBER_INDEX(T, S)                                                                          \
    extern "C" __global__ void index_select_##S(const T* x, View xv, const i64* idx, T* out,       \
                                                i64 n, i64 dim, i64 n_idx, i64 inner) {            \
        index_select_k<T>(x, xv, idx, out, n, dim, n_idx, inner);                                  \
    }                                                                                              \
    extern "C" __global__ void index_add_##S(const T* g, View gv, const i64* seg_off,              \
                                             const i64* seg_pos, T* out, i64 n, i64 dim,           \
                                             i64 n_idx, i64 inner) {                               \
        index_add_k<T>(g, gv, seg_off, seg_pos, out, n, dim, n_idx, inner);                        \
    }                                                                                              \
    extern "C" __global__ void gather_##S(const T* x, View xv, const i64* idx, T* out, i64 n,      \
                                          i64 dim, i64 n_ax, i64 inner) {                          \
        gather_k<T>(x, xv, idx, out, n, dim, n_ax, inner);                                         \
    }                                                                                              \
    extern "C" __global__ void scatter_add_##S(const T* g, View gv, const i64* idx, T* out, i64 n, \
                                               i64 dim, i64 n_ax, i64 inner) {                     \
        scatter_add_k<T>(g, gv, idx, out, n, dim, n_ax, inner);                                    \
    }                                                                                              \
    extern "C" __global__ void where_##S(const T* c, View cv, const T* a, View av, const T* b,     \
                                         View bv, T* out, i64 n) {                                 \
        where_k<T>(c, cv, a, av, b, bv, out, n);                                                   \
    }                                                                                              \
    extern "C" __global__ void concat_part_##S(const T* x, View xv, T* out, i64 n, i64 block,      \
                                               i64 out_row, i64 out_off) {                         \
        concat_part_k<T>(x, xv, out, n, block, out_row, out_off);                                  \
    }

EMBER_INDEX(float, f32)
EMBER_INDEX(double, f64)

#define EMBER_CAST(S, SN, D, DN)                                                                   \
    extern "C" __global__ void cast_##SN##_to_##DN(const S* x, View xv, D* out, i64 n) {           \
        cast_k<S, D>(x, xv, out, n);                                                               \
    }

EMBER_CAST(float, f32, double, f64)
EMBER_CAST(double, f64, float, f32)
EMBER_CAST(float, f32, float, f32)
EMBER_CAST(double, f64, double, f64)
