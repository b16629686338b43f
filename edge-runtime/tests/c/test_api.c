/* A C program embedding edge-runtime through its C ABI: load, chat with a callback, a second
 * turn on the same session, cancel from another thread, error reporting, free.
 * Usage: test_api MODEL.gguf ; exit status 0 on success. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edge_runtime.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAILED %s:%d: %s (%s)\n", __FILE__, __LINE__, #c, edge_last_error()); exit(1); } } while (0)

typedef struct { char text[8192]; size_t len; int pieces; } Buf;

static int collect(const char *piece, size_t len, void *user) {
    Buf *b = (Buf *)user;
    if (b->len + len < sizeof b->text) { memcpy(b->text + b->len, piece, len); b->len += len; b->text[b->len] = 0; }
    b->pieces++;
    return 0;
}

static int stop_after_3(const char *piece, size_t len, void *user) {
    (void)piece; (void)len;
    return ++((Buf *)user)->pieces >= 3;
}

static void *cancel_soon(void *s) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    edge_session_cancel((const EdgeSession *)s);
    return NULL;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    CHECK(edge_model_load("/nonexistent/model.gguf") == NULL);
    CHECK(strstr(edge_last_error(), "/nonexistent/model.gguf") != NULL);

    EdgeModel *model = edge_model_load(argv[1]);
    CHECK(model != NULL);
    EdgeSession *s = edge_session_new(model, 1024, 2);
    CHECK(s != NULL);

    EdgeGenParams p = edge_gen_params_default();
    p.temperature = 0.0f;
    p.max_tokens = 24;
    const char *roles[] = {"user", "assistant", "user"};
    const char *contents[] = {"I feel lonely today. Can you talk with me?", NULL, "Thank you."};
    Buf b1 = {0};
    CHECK(edge_session_chat(s, roles, contents, 1, &p, collect, &b1) > 0);
    CHECK(b1.len > 0 && strstr(b1.text, "sorry") != NULL);
    printf("turn 1: %s\n", b1.text);

    contents[1] = b1.text;
    Buf b2 = {0};
    CHECK(edge_session_chat(s, roles, contents, 3, &p, collect, &b2) > 0);
    printf("turn 2: %s\n", b2.text);

    /* The callback can stop generation. */
    Buf b3 = {0};
    CHECK(edge_session_complete(s, "Once upon a time", &p, stop_after_3, &b3) == 3);

    /* Cancel from another thread. */
    p.max_tokens = 2000;
    Buf b4 = {0};
    pthread_t t;
    edge_session_reset(s);
    CHECK(pthread_create(&t, NULL, cancel_soon, s) == 0);
    int n = edge_session_complete(s, "Once upon a time", &p, collect, &b4);
    pthread_join(t, NULL);
    CHECK(n >= 0 && n < 2000);
    printf("cancelled after %d pieces\n", n);

    CHECK(edge_session_complete(s, NULL, &p, collect, &b4) == -1);
    CHECK(strstr(edge_last_error(), "prompt") != NULL);

    edge_session_free(s);
    edge_model_free(model);
    printf("C API OK\n");
    return 0;
}
