/* http_floor.c - the floor for dovetaild's HTTP figures: a bare libevent HTTP server that answers
 * every request with the same N-byte body, on one loop thread, as dovetaild's loop does.
 *
 *   http_floor PORT BODY_BYTES
 *
 * Prints "http_floor listening on 127.0.0.1:PORT" and serves until killed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static char *body;
static size_t body_len;

static void reply(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_reference(b, body, body_len, NULL, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: http_floor PORT BODY_BYTES\n");
        return 2;
    }
    int port = atoi(argv[1]);
    body_len = (size_t)atol(argv[2]);
    body = malloc(body_len + 1);
    if (!body) return 3;
    memset(body, 'x', body_len);
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_gencb(http, reply, NULL);
    evhttp_set_timeout(http, 60);
    if (!evhttp_bind_socket_with_handle(http, "127.0.0.1", (uint16_t)port)) {
        fprintf(stderr, "http_floor: cannot listen on port %d\n", port);
        return 1;
    }
    printf("http_floor listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    event_base_dispatch(base);
    return 0;
}
