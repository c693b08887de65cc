/* lsa.h - the built-in dense vectorizer (DESIGN section 2): latent semantic analysis of a sparse
 * weighted document-term matrix by randomized SVD (Halko, Martinsson, Tropp 2011).
 *
 * dt_lsa_fit learns a term projection from a training matrix (the nightly job); dt_lsa_project and
 * dt_lsa_project_csr fold documents or queries into the learned space. This module does not weight
 * terms (BM25 / TF-IDF happen before it), does not hash tokens and does not store anything: a model
 * is two plain arrays a snapshot can write and read back as they are.
 */
#ifndef DT_LSA_H
#define DT_LSA_H

#include <stddef.h>
#include <stdint.h>

#include "dt.h"

/* A sparse matrix in CSR form: n_rows documents x n_cols terms (compact term ids 0..n_cols-1).
 * Row i holds entries row_ptr[i] .. row_ptr[i+1]-1 of col[] and val[]; row_ptr has n_rows + 1
 * entries and row_ptr[0] == 0 (row_ptr may be NULL when n_rows == 0; col and val may be NULL when
 * there are no entries). Columns within a row need not be sorted; a repeated column adds up. Every
 * array is borrowed: nothing here frees or keeps them. */
typedef struct dt_csr {
    size_t n_rows, n_cols;
    const size_t *row_ptr;
    const uint32_t *col;
    const float *val;
} dt_csr;

/* Options of dt_lsa_fit. Start from dt_lsa_opts_default() and change what you need. */
typedef struct dt_lsa_opts {
    size_t dim;        /* rank of the projection, 1 .. DT_DIM_MAX */
    size_t oversample; /* extra random directions beyond dim (the sketch has dim + oversample) */
    int power_iters;   /* subspace iterations, 0 .. 16; each sharpens the spectrum's tail */
    uint64_t seed;     /* seed of the Gaussian test matrix */
    float sigma_exp;   /* proj = V_k * diag(sigma_k^sigma_exp); finite (0: plain V_k) */
    int threads;       /* threads of the sparse products; <= 0 means every online CPU */
} dt_lsa_opts;

/* A learned model. proj and sigma are owned (dt_lsa_alloc or dt_lsa_fit allocate them, dt_lsa_free
 * releases them); a model is read-only once built, so any number of threads may project with it. */
typedef struct dt_lsa {
    size_t n_terms, dim;
    float *proj;  /* n_terms x dim, row-major, 64-byte aligned; NULL when n_terms == 0 */
    float *sigma; /* dim singular values, non-increasing; 0 for dimensions beyond the rank */
    int threads;  /* threads of dt_lsa_project_csr; <= 0 means every online CPU */
} dt_lsa;

/* dim 256, oversample 10, power_iters 2, a fixed seed, sigma_exp 0, threads 0 (every CPU). */
dt_lsa_opts dt_lsa_opts_default(void);

/* Learns the rank-dim term projection
 *     proj = V_k * diag(sigma_k^sigma_exp),  where A ~ U_k S_k V_k^T.
 *
 * A document's (or query's) dense vector is then the L2-normalised sum of val_j * proj[col_j], i.e.
 * its coordinates in the U_k S_k^(1+sigma_exp) space up to scale. When rank(A) < dim, the extra
 * dimensions are zero (zero columns of proj, zero sigma); singular values below 1e-5 * sigma_1
 * count as zero. Each column of proj is signed so that its largest-magnitude entry is positive.
 *
 * A is borrowed and not modified; opts may be NULL (defaults). On success *out owns a new model
 * (free it with dt_lsa_free); on error *out is zeroed. Errors: -DT_EINVAL (A's structure: row_ptr
 * not starting at 0 or decreasing, a col >= n_cols, a non-finite val; or an option out of range:
 * field names which), -DT_ELIMIT (more than 2^32 rows), -DT_ENOMEM, -DT_EINTERNAL (a LAPACK
 * routine failed).
 *
 * Deterministic: the same A, opts and OpenBLAS thread count give bitwise identical models
 * (opts.threads does not change the result). OpenBLAS's own threads are the process's setting
 * (OPENBLAS_NUM_THREADS); this function never changes it. Thread-safe for distinct outputs.
 *
 * Accuracy: exact to float rounding when rank(A) or min(n_rows, n_cols) is at most
 * l = dim + oversample. Otherwise the usual randomized-SVD error, which shrinks like
 * (sigma_l+1 / sigma_k)^(2q+1) with q = power_iters. A negative sigma_exp divides by sigma: the
 * coordinates of a direction with sigma_i far below sigma_1 then carry float rounding amplified
 * by (sigma_1 / sigma_i)^2.
 *
 * Cost, with l = min(dim + oversample, n_rows, n_cols) and q = power_iters: 2q + 2 sparse products
 * of nnz * l multiply-adds each; 2q + 2 orthonormalisation passes over n_rows x l or n_cols x l
 * (dsyrk + sgemm each); one more Gram matrix and l x l eigenproblem in double; one
 * n_cols x l x dim GEMM. Peak memory beyond A, in bytes:
 *     max(4 l (n_rows + n_cols) + 8 nnz + 8 n_cols,  4 n_cols (l + dim))  +  O(l^2),
 * e.g. about 2.0 GB for 1,000,000 x 500,000 with 50 nnz per row at dim 256. */
int dt_lsa_fit(const dt_csr *A, const dt_lsa_opts *opts, dt_lsa *out, dt_err *err);

/* out[0..dim) = the L2-normalised sum of vals[i] * proj[cols[i]]. Entries with cols[i] >= n_terms
 * (terms unseen when the model was fitted) are ignored. A zero (or non-finite) sum gives the zero
 * vector, never NaN. cols and vals hold nnz entries (may be NULL when nnz == 0). Thread-safe (reads
 * the model only). Gives bitwise the same vector as the row's output of dt_lsa_project_csr. */
void dt_lsa_project(const dt_lsa *m, const uint32_t *cols, const float *vals, size_t nnz,
                    float *out);

/* Projects every row of A as dt_lsa_project does: row i goes to out[i * ld .. i * ld + dim); the
 * other ld - dim floats of each row are left untouched. A's columns need not match the model's:
 * cols >= n_terms are ignored. Uses m->threads threads. Errors: -DT_EINVAL (ld < dim, A's row_ptr
 * malformed, NULL out with rows to write). Thread-safe for distinct outputs. */
int dt_lsa_project_csr(const dt_lsa *m, const dt_csr *A, float *out, size_t ld, dt_err *err);

/* Allocates a zeroed model of n_terms x dim (proj 64-byte aligned), e.g. to read a stored model
 * into. Errors: -DT_EINVAL (dim == 0 or > DT_DIM_MAX), -DT_ENOMEM. On error *m is zeroed. */
int dt_lsa_alloc(dt_lsa *m, size_t n_terms, size_t dim, dt_err *err);

/* Releases what m owns and zeroes it; NULL or a zeroed model is fine. */
void dt_lsa_free(dt_lsa *m);

#endif
