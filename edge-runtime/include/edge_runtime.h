/* edge_runtime.h: the C ABI of edge-runtime (libedge_runtime.so / .dylib / .dll).
 *
 * Kept in sync with src/ffi.rs; tests/it/c_abi.rs checks that every exported function is declared
 * here and compiles and runs tests/c/test_api.c against the library.
 *
 * Errors: functions return NULL or -1; edge_last_error() gives the message (per thread).
 * Threads: a model may be shared by sessions on different threads; a session runs one call at a
 * time; edge_session_cancel() may be called from any thread while a generation runs.
 */
#ifndef EDGE_RUNTIME_H
#define EDGE_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct EdgeModel EdgeModel;
typedef struct EdgeSession EdgeSession;

typedef struct EdgeGenParams {
    uint32_t max_tokens;
    float temperature; /* <= 0: greedy */
    uint32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    uint64_t seed;
} EdgeGenParams;

/* Receives each UTF-8 text piece (len bytes, not NUL-terminated); return 0 to continue. */
typedef int (*EdgeTokenCallback)(const char *piece, size_t len, void *user);

const char *edge_last_error(void);
EdgeGenParams edge_gen_params_default(void);

EdgeModel *edge_model_load(const char *path);
void edge_model_free(EdgeModel *model);

/* 0 for n_ctx / n_threads means the defaults. */
EdgeSession *edge_session_new(const EdgeModel *model, uint32_t n_ctx, uint32_t n_threads);
void edge_session_free(EdgeSession *session);
void edge_session_reset(const EdgeSession *session);
void edge_session_cancel(const EdgeSession *session);

/* Return the number of pieces streamed, or -1 on error. params may be NULL (defaults). */
int edge_session_chat(const EdgeSession *session, const char *const *roles,
                      const char *const *contents, size_t n_messages,
                      const EdgeGenParams *params, EdgeTokenCallback cb, void *user);
int edge_session_complete(const EdgeSession *session, const char *prompt,
                          const EdgeGenParams *params, EdgeTokenCallback cb, void *user);

#ifdef __cplusplus
}
#endif

#endif /* EDGE_RUNTIME_H */
