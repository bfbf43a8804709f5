
/*
 * FlowScale for nginx: the HTTP/1.1 and WebSocket client to ComfyUI.
 *
 * Both run on nginx connections, events and timers the way the upstream
 * module does: a non-blocking connect to an already resolved address, one
 * handler for read and write events (epoll is edge-triggered, so every read
 * goes on until EAGAIN) and one timer per exchange.  Responses are parsed
 * with nginx's own status line, header and chunked parsers; they keep their
 * state in an ngx_http_request_t, so each exchange owns a zeroed one that
 * nothing but the parsers touches.  Every exchange has its own pool, and
 * every path ends by destroying it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include "ngx_http_flowscale_comfy.h"


#define NGX_HTTP_FLOWSCALE_COMFY_BUF        16384
#define NGX_HTTP_FLOWSCALE_COMFY_POOL       4096

#define NGX_HTTP_FLOWSCALE_WS_OUT           1024
#define NGX_HTTP_FLOWSCALE_WS_KEEP          65536
#define NGX_HTTP_FLOWSCALE_WS_LINGER        5000

#define NGX_HTTP_FLOWSCALE_WS_CONT          0x0
#define NGX_HTTP_FLOWSCALE_WS_TEXT          0x1
#define NGX_HTTP_FLOWSCALE_WS_BINARY        0x2
#define NGX_HTTP_FLOWSCALE_WS_CLOSE         0x8
#define NGX_HTTP_FLOWSCALE_WS_PING          0x9
#define NGX_HTTP_FLOWSCALE_WS_PONG          0xa

#define NGX_HTTP_FLOWSCALE_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


typedef struct ngx_http_flowscale_comfy_conn_s  ngx_http_flowscale_comfy_conn_t;

typedef ngx_int_t (*ngx_http_flowscale_comfy_header_pt)(
    ngx_http_flowscale_comfy_conn_t *cc, ngx_str_t *name, ngx_str_t *value);


/* what an HTTP request and a WebSocket share; first member of both */

struct ngx_http_flowscale_comfy_conn_s {
    ngx_pool_t                          *pool;
    ngx_log_t                            log;
    ngx_peer_connection_t                peer;
    ngx_event_t                          timer;
    ngx_str_t                            name;
    ngx_str_t                            target;    /* "GET /ws", for logs */

    ngx_buf_t                           *out;
    ngx_buf_t                           *in;

    ngx_http_request_t                  *r;         /* parsers' state only */
    ngx_http_status_t                    status;
    ngx_http_flowscale_comfy_header_pt   header;

    ngx_int_t                            rc;        /* of a posted finish */

    unsigned                             connected:1;
    unsigned                             status_done:1;
};


typedef enum {
    ngx_http_flowscale_comfy_st_head = 0,
    ngx_http_flowscale_comfy_st_length,
    ngx_http_flowscale_comfy_st_chunked,
    ngx_http_flowscale_comfy_st_eof
} ngx_http_flowscale_comfy_state_e;


struct ngx_http_flowscale_comfy_req_s {
    ngx_http_flowscale_comfy_conn_t      cc;

    ngx_http_flowscale_comfy_done_pt     done;
    void                                *data;

    ngx_uint_t                           state;
    off_t                                content_length;
    ngx_http_chunked_t                   chunked;
    ngx_buf_t                            body;

    unsigned                             chunked_te:1;
    unsigned                             head:1;
    unsigned                             in_done:1;
};


typedef enum {
    ngx_http_flowscale_ws_st_head = 0,
    ngx_http_flowscale_ws_st_frame,
    ngx_http_flowscale_ws_st_payload
} ngx_http_flowscale_ws_state_e;


struct ngx_http_flowscale_ws_s {
    ngx_http_flowscale_comfy_conn_t      cc;

    ngx_http_flowscale_ws_open_pt        open;
    ngx_http_flowscale_ws_message_pt     message;
    ngx_http_flowscale_ws_closed_pt      closed;
    void                                *data;

    u_char                               accept[28];

    ngx_uint_t                           state;
    ngx_uint_t                           message_opcode;  /* 0: none open */
    uint64_t                             remaining;       /* of the frame */

    u_char                              *msg;       /* ngx_alloc()ed */
    size_t                               msg_len;
    size_t                               msg_size;

    unsigned                             fin:1;
    unsigned                             upgrade:1;
    unsigned                             connection_upgrade:1;
    unsigned                             accept_ok:1;
    unsigned                             extensions:1;
    unsigned                             in_callback:1;
    unsigned                             close_requested:1;
    unsigned                             close_received:1;
    unsigned                             close_sent:1;
    unsigned                             finished:1;
};


static ngx_int_t ngx_http_flowscale_comfy_init(
    ngx_http_flowscale_comfy_conn_t *cc, ngx_pool_t *pool,
    ngx_http_flowscale_peer_t *peer, const char *method, ngx_str_t *path,
    ngx_log_t *log);
static ngx_int_t ngx_http_flowscale_comfy_valid(u_char *p, size_t len);
static u_char *ngx_http_flowscale_comfy_log_error(ngx_log_t *log,
    u_char *buf, size_t len);
static ngx_int_t ngx_http_flowscale_comfy_connect(
    ngx_http_flowscale_comfy_conn_t *cc, ngx_event_handler_pt handler);
static ngx_int_t ngx_http_flowscale_comfy_test_connect(ngx_connection_t *c);
static ngx_int_t ngx_http_flowscale_comfy_send(
    ngx_http_flowscale_comfy_conn_t *cc);
static ngx_int_t ngx_http_flowscale_comfy_head_room(
    ngx_http_flowscale_comfy_conn_t *cc);
static ngx_int_t ngx_http_flowscale_comfy_parse_head(
    ngx_http_flowscale_comfy_conn_t *cc);
static void ngx_http_flowscale_comfy_post(ngx_http_flowscale_comfy_conn_t *cc,
    ngx_int_t rc);
static void ngx_http_flowscale_comfy_close(
    ngx_http_flowscale_comfy_conn_t *cc);

static void ngx_http_flowscale_comfy_req_handler(ngx_event_t *ev);
static void ngx_http_flowscale_comfy_req_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_flowscale_comfy_req_read(
    ngx_http_flowscale_comfy_req_t *req);
static ngx_int_t ngx_http_flowscale_comfy_req_process(
    ngx_http_flowscale_comfy_req_t *req);
static ngx_int_t ngx_http_flowscale_comfy_req_header(
    ngx_http_flowscale_comfy_conn_t *cc, ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_flowscale_comfy_req_body(
    ngx_http_flowscale_comfy_req_t *req);
static ngx_int_t ngx_http_flowscale_comfy_req_chunked(
    ngx_http_flowscale_comfy_req_t *req);
static ngx_int_t ngx_http_flowscale_comfy_req_grow(
    ngx_http_flowscale_comfy_req_t *req, size_t need);
static void ngx_http_flowscale_comfy_req_finish(
    ngx_http_flowscale_comfy_req_t *req, ngx_int_t rc);

static void ngx_http_flowscale_ws_handler(ngx_event_t *ev);
static void ngx_http_flowscale_ws_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_flowscale_ws_flush(ngx_http_flowscale_ws_t *ws);
static ngx_int_t ngx_http_flowscale_ws_read(ngx_http_flowscale_ws_t *ws);
static ngx_int_t ngx_http_flowscale_ws_header(
    ngx_http_flowscale_comfy_conn_t *cc, ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_flowscale_ws_head(ngx_http_flowscale_ws_t *ws);
static ngx_int_t ngx_http_flowscale_ws_frames(ngx_http_flowscale_ws_t *ws);
static ngx_int_t ngx_http_flowscale_ws_control(ngx_http_flowscale_ws_t *ws,
    ngx_uint_t opcode, u_char *payload, size_t len);
static ngx_int_t ngx_http_flowscale_ws_reserve(ngx_http_flowscale_ws_t *ws,
    size_t need);
static ngx_int_t ngx_http_flowscale_ws_deliver(ngx_http_flowscale_ws_t *ws,
    u_char *text, size_t len);
static ngx_int_t ngx_http_flowscale_ws_frame(ngx_http_flowscale_ws_t *ws,
    ngx_uint_t opcode, u_char *payload, size_t len);
static void ngx_http_flowscale_ws_goodbye(ngx_http_flowscale_ws_t *ws,
    ngx_uint_t code);
static void ngx_http_flowscale_ws_finish(ngx_http_flowscale_ws_t *ws,
    ngx_int_t rc);
static void ngx_http_flowscale_ws_cleanup(void *data);


/* shared: setup, connect, send, response head */


static ngx_int_t
ngx_http_flowscale_comfy_init(ngx_http_flowscale_comfy_conn_t *cc,
    ngx_pool_t *pool, ngx_http_flowscale_peer_t *peer, const char *method,
    ngx_str_t *path, ngx_log_t *log)
{
    size_t  mlen;

    mlen = ngx_strlen(method);

    if (mlen == 0 || path->len == 0 || path->data[0] != '/'
        || ngx_http_flowscale_comfy_valid((u_char *) method, mlen) != NGX_OK
        || ngx_http_flowscale_comfy_valid(path->data, path->len) != NGX_OK
        || peer->name.len == 0
        || ngx_http_flowscale_comfy_valid(peer->name.data, peer->name.len)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "flowscale: invalid ComfyUI request \"%s %V\" to \"%V\"",
                      method, path, &peer->name);
        return NGX_ERROR;
    }

    cc->pool = pool;

    /*
     * a copy of the caller's log with our own handler: the caller's log
     * (often a client request's) may be gone long before the backend answers
     */
    cc->log = *log;
    cc->log.handler = ngx_http_flowscale_comfy_log_error;
    cc->log.data = cc;
    cc->log.action = "connecting to ComfyUI";
    pool->log = &cc->log;

    cc->name.data = ngx_pstrdup(pool, &peer->name);
    if (cc->name.data == NULL) {
        return NGX_ERROR;
    }

    cc->name.len = peer->name.len;

    cc->target.len = mlen + 1 + path->len;
    cc->target.data = ngx_pnalloc(pool, cc->target.len);
    if (cc->target.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cc->target.data, "%s %V", method, path);

    cc->in = ngx_create_temp_buf(pool, NGX_HTTP_FLOWSCALE_COMFY_BUF);
    if (cc->in == NULL) {
        return NGX_ERROR;
    }

    cc->r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    if (cc->r == NULL) {
        return NGX_ERROR;
    }

    cc->peer.sockaddr = peer->sockaddr;
    cc->peer.socklen = peer->socklen;
    cc->peer.name = &cc->name;
    cc->peer.get = ngx_event_get_peer;
    cc->peer.log = &cc->log;
    cc->peer.log_error = NGX_ERROR_ERR;
    cc->peer.tries = 1;

    cc->timer.log = &cc->log;

    return NGX_OK;
}


/* no spaces, controls or CR/LF that would split the request line */

static ngx_int_t
ngx_http_flowscale_comfy_valid(u_char *p, size_t len)
{
    u_char  *last;

    for (last = p + len; p < last; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static u_char *
ngx_http_flowscale_comfy_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                           *p;
    ngx_http_flowscale_comfy_conn_t  *cc;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    cc = log->data;

    return ngx_snprintf(buf, len, ", backend: %V, request: \"%V\"",
                        &cc->name, &cc->target);
}


/*
 * NGX_OK: connecting or connected, the handler gets the events;
 * NGX_ERROR: failed now (already logged), the caller posts the failure
 */

static ngx_int_t
ngx_http_flowscale_comfy_connect(ngx_http_flowscale_comfy_conn_t *cc,
    ngx_event_handler_pt handler)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &cc->log, 0,
                   "flowscale comfy connect to %V", &cc->name);

    rc = ngx_event_connect_peer(&cc->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        cc->peer.connection = NULL;
        return NGX_ERROR;
    }

    c = cc->peer.connection;

    c->data = cc;
    c->pool = cc->pool;
    c->read->handler = handler;
    c->write->handler = handler;

    cc->log.connection = c->number;
    cc->r->connection = c;

    if (rc == NGX_OK) {
        /*
         * connected at once (loopback): write from the event loop anyway,
         * so that no callback ever runs inside the caller's call
         */
        cc->connected = 1;
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_comfy_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    /* Solaris returns the pending error from getsockopt() itself */

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        (void) ngx_connection_error(c, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_comfy_send(ngx_http_flowscale_comfy_conn_t *cc)
{
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = cc->peer.connection;
    b = cc->out;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "flowscale comfy send: %z of %z",
                       n, b->last - b->pos);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN || n == 0) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        b->pos += n;
    }

    b->pos = b->start;
    b->last = b->start;

    return NGX_OK;
}


/* room to read more of the head into cc->in, which grows up to the limit */

static ngx_int_t
ngx_http_flowscale_comfy_head_room(ngx_http_flowscale_comfy_conn_t *cc)
{
    u_char     *p;
    size_t      size, n;
    ngx_buf_t  *b;

    b = cc->in;

    if (b->last < b->end) {
        return NGX_OK;
    }

    n = b->last - b->pos;

    if (b->pos > b->start) {
        ngx_memmove(b->start, b->pos, n);
        b->pos = b->start;
        b->last = b->start + n;
        return NGX_OK;
    }

    size = b->end - b->start;

    if (size >= NGX_HTTP_FLOWSCALE_COMFY_MAX_HEADER) {
        ngx_log_error(NGX_LOG_ERR, &cc->log, 0,
                      "ComfyUI sent too big a header");
        return NGX_ERROR;
    }

    p = ngx_palloc(cc->pool, size * 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, b->pos, n);
    ngx_pfree(cc->pool, b->start);

    b->start = p;
    b->pos = p;
    b->last = p + n;
    b->end = p + size * 2;

    return NGX_OK;
}


/*
 * Status line and headers from cc->in: NGX_OK at the end of a final
 * (non-1xx, or 101) head, NGX_AGAIN, NGX_ERROR.  An incomplete line is
 * parsed again from its start once more bytes came, so no parser pointer
 * outlives a move of the buffer.
 */

static ngx_int_t
ngx_http_flowscale_comfy_parse_head(ngx_http_flowscale_comfy_conn_t *cc)
{
    u_char              *line;
    ngx_int_t            rc;
    ngx_str_t            name, value;
    ngx_buf_t           *b;
    ngx_http_request_t  *r;

    b = cc->in;
    r = cc->r;

    for ( ;; ) {
        line = b->pos;

        if (!cc->status_done) {
            rc = ngx_http_parse_status_line(r, b, &cc->status);

            if (rc == NGX_AGAIN) {
                b->pos = line;
                r->state = 0;
                ngx_memzero(&cc->status, sizeof(ngx_http_status_t));
                return NGX_AGAIN;
            }

            if (rc != NGX_OK) {
                ngx_log_error(NGX_LOG_ERR, &cc->log, 0,
                              "ComfyUI sent an invalid status line");
                return NGX_ERROR;
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &cc->log, 0,
                           "flowscale comfy status: %ui", cc->status.code);

            cc->status_done = 1;
            continue;
        }

        rc = ngx_http_parse_header_line(r, b, 1);

        if (rc == NGX_OK) {
            if (r->invalid_header) {
                continue;
            }

            name.data = r->header_name_start;
            name.len = r->header_name_end - r->header_name_start;
            value.data = r->header_start;
            value.len = r->header_end - r->header_start;

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &cc->log, 0,
                           "flowscale comfy header: \"%V: %V\"",
                           &name, &value);

            if (cc->header(cc, &name, &value) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {

            if (cc->status.code >= 100 && cc->status.code < 200
                && cc->status.code != 101)
            {
                /* "100 Continue" and friends: the real answer follows */
                cc->status_done = 0;
                ngx_memzero(&cc->status, sizeof(ngx_http_status_t));
                continue;
            }

            return NGX_OK;
        }

        if (rc == NGX_AGAIN) {
            b->pos = line;
            r->state = 0;
            return NGX_AGAIN;
        }

        ngx_log_error(NGX_LOG_ERR, &cc->log, 0,
                      "ComfyUI sent an invalid header");
        return NGX_ERROR;
    }
}


/* finish from the event loop: failures found inside the caller's call */

static void
ngx_http_flowscale_comfy_post(ngx_http_flowscale_comfy_conn_t *cc,
    ngx_int_t rc)
{
    cc->rc = rc;

    if (cc->timer.timer_set) {
        ngx_del_timer(&cc->timer);
    }

    /* a pending callback must not be skipped by a worker that exits */
    cc->timer.cancelable = 0;

    ngx_add_timer(&cc->timer, 0);
}


static void
ngx_http_flowscale_comfy_close(ngx_http_flowscale_comfy_conn_t *cc)
{
    if (cc->peer.connection) {
        ngx_close_connection(cc->peer.connection);
        cc->peer.connection = NULL;
    }

    if (cc->timer.timer_set) {
        ngx_del_timer(&cc->timer);
    }
}


/* HTTP requests */


ngx_http_flowscale_comfy_req_t *
ngx_http_flowscale_comfy_request(ngx_http_flowscale_peer_t *peer,
    const char *method, ngx_str_t *path, ngx_str_t *content_type,
    ngx_str_t *body, ngx_msec_t timeout,
    ngx_http_flowscale_comfy_done_pt done, void *data, ngx_log_t *log)
{
    size_t                            len;
    ngx_buf_t                        *b;
    ngx_pool_t                       *pool;
    ngx_http_flowscale_comfy_req_t   *req;
    ngx_http_flowscale_comfy_conn_t  *cc;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "flowscale comfy request: \"%s %V\" to %V",
                   method, path, &peer->name);

    if (content_type
        && (ngx_strlchr(content_type->data,
                        content_type->data + content_type->len, LF)
            || ngx_strlchr(content_type->data,
                           content_type->data + content_type->len, CR)))
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "flowscale: invalid Content-Type for ComfyUI");
        return NULL;
    }

    pool = ngx_create_pool(NGX_HTTP_FLOWSCALE_COMFY_POOL, log);
    if (pool == NULL) {
        return NULL;
    }

    req = ngx_pcalloc(pool, sizeof(ngx_http_flowscale_comfy_req_t));
    if (req == NULL) {
        goto failed;
    }

    cc = &req->cc;

    if (ngx_http_flowscale_comfy_init(cc, pool, peer, method, path, log)
        != NGX_OK)
    {
        goto failed;
    }

    cc->header = ngx_http_flowscale_comfy_req_header;
    cc->timer.handler = ngx_http_flowscale_comfy_req_timer;
    cc->timer.data = req;

    req->done = done;
    req->data = data;
    req->content_length = -1;
    req->head = (ngx_strcmp(method, "HEAD") == 0);

    len = cc->target.len + sizeof(" HTTP/1.1" CRLF) - 1
          + sizeof("Host: " CRLF) - 1 + cc->name.len
          + sizeof("Connection: close" CRLF) - 1
          + sizeof("User-Agent: FlowScale-nginx" CRLF) - 1
          + sizeof(CRLF) - 1;

    if (content_type) {
        len += sizeof("Content-Type: " CRLF) - 1 + content_type->len;
    }

    if (body || ngx_strcmp(method, "GET") != 0) {
        len += sizeof("Content-Length: " CRLF) - 1 + NGX_OFF_T_LEN;
    }

    if (body) {
        len += body->len;
    }

    b = ngx_create_temp_buf(pool, len);
    if (b == NULL) {
        goto failed;
    }

    cc->out = b;

    b->last = ngx_sprintf(b->last, "%V HTTP/1.1" CRLF "Host: %V" CRLF
                          "Connection: close" CRLF
                          "User-Agent: FlowScale-nginx" CRLF,
                          &cc->target, &cc->name);

    if (content_type) {
        b->last = ngx_sprintf(b->last, "Content-Type: %V" CRLF, content_type);
    }

    /* aiohttp wants a length on every POST, even an empty one */

    if (body || ngx_strcmp(method, "GET") != 0) {
        b->last = ngx_sprintf(b->last, "Content-Length: %uz" CRLF,
                              body ? body->len : 0);
    }

    *b->last++ = CR; *b->last++ = LF;

    if (body && body->len) {
        b->last = ngx_cpymem(b->last, body->data, body->len);
    }

    if (ngx_http_flowscale_comfy_connect(cc,
                                         ngx_http_flowscale_comfy_req_handler)
        != NGX_OK)
    {
        ngx_http_flowscale_comfy_post(cc, NGX_ERROR);
        return req;
    }

    /*
     * not cancelable: a worker that shuts down finishes the exchange (a
     * prompt may be in flight), which the timeout bounds
     */
    ngx_add_timer(&cc->timer, timeout);

    return req;

failed:

    ngx_destroy_pool(pool);
    return NULL;
}


void
ngx_http_flowscale_comfy_cancel(ngx_http_flowscale_comfy_req_t *req)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &req->cc.log, 0,
                   "flowscale comfy cancel: \"%V\"", &req->cc.target);

    if (req->in_done) {
        /* the pool goes right after done returns */
        return;
    }

    ngx_http_flowscale_comfy_close(&req->cc);
    ngx_destroy_pool(req->cc.pool);
}


static void
ngx_http_flowscale_comfy_req_handler(ngx_event_t *ev)
{
    ngx_int_t                         rc;
    ngx_connection_t                 *c;
    ngx_http_flowscale_comfy_req_t   *req;
    ngx_http_flowscale_comfy_conn_t  *cc;

    c = ev->data;
    req = c->data;
    cc = &req->cc;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "flowscale comfy %s event: \"%V\"",
                   ev->write ? "write" : "read", &cc->target);

    if (!cc->connected) {
        if (ngx_http_flowscale_comfy_test_connect(c) != NGX_OK) {
            ngx_http_flowscale_comfy_req_finish(req, NGX_ERROR);
            return;
        }

        cc->connected = 1;
    }

    if (cc->out->pos < cc->out->last) {
        cc->log.action = "sending request to ComfyUI";

        rc = ngx_http_flowscale_comfy_send(cc);

        if (rc == NGX_ERROR) {
            ngx_http_flowscale_comfy_req_finish(req, NGX_ERROR);
            return;
        }

        if (rc == NGX_AGAIN) {
            return;
        }

        cc->log.action = "reading response from ComfyUI";
    }

    rc = ngx_http_flowscale_comfy_req_read(req);

    if (rc == NGX_AGAIN) {
        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_http_flowscale_comfy_req_finish(req, NGX_ERROR);
        }

        return;
    }

    ngx_http_flowscale_comfy_req_finish(req, rc);
}


static void
ngx_http_flowscale_comfy_req_timer(ngx_event_t *ev)
{
    ngx_http_flowscale_comfy_req_t  *req;

    req = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &req->cc.log, 0,
                   "flowscale comfy timer: \"%V\"", &req->cc.target);

    if (req->cc.rc != NGX_OK) {
        ngx_http_flowscale_comfy_req_finish(req, req->cc.rc);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, &req->cc.log, NGX_ETIMEDOUT,
                  "ComfyUI timed out");

    ngx_http_flowscale_comfy_req_finish(req, NGX_HTTP_GATEWAY_TIME_OUT);
}


/* reads until EAGAIN: NGX_AGAIN, NGX_OK (response complete), NGX_ERROR */

static ngx_int_t
ngx_http_flowscale_comfy_req_read(ngx_http_flowscale_comfy_req_t *req)
{
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = req->cc.peer.connection;

    for ( ;; ) {

        if (!c->read->ready) {
            return NGX_AGAIN;
        }

        switch (req->state) {

        case ngx_http_flowscale_comfy_st_head:
            if (ngx_http_flowscale_comfy_head_room(&req->cc) != NGX_OK) {
                return NGX_ERROR;
            }

            b = req->cc.in;
            break;

        case ngx_http_flowscale_comfy_st_chunked:
            /* the chunked parser keeps its state, not the bytes it read */
            b = req->cc.in;

            if (b->pos == b->last) {
                b->pos = b->start;
                b->last = b->start;

            } else if (b->last == b->end) {
                ngx_memmove(b->start, b->pos, b->last - b->pos);
                b->last = b->start + (b->last - b->pos);
                b->pos = b->start;
            }

            break;

        default: /* length, eof: straight into the body */
            b = &req->body;

            if (b->last == b->end
                && ngx_http_flowscale_comfy_req_grow(req, 1) != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        n = c->recv(c, b->last, b->end - b->last);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "flowscale comfy recv: %z", n);

        if (n == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n == 0) {
            if (req->state == ngx_http_flowscale_comfy_st_eof) {
                return NGX_OK;
            }

            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "ComfyUI closed the connection prematurely");
            return NGX_ERROR;
        }

        b->last += n;

        rc = ngx_http_flowscale_comfy_req_process(req);

        if (rc != NGX_AGAIN) {
            return rc;
        }
    }
}


static ngx_int_t
ngx_http_flowscale_comfy_req_process(ngx_http_flowscale_comfy_req_t *req)
{
    ngx_int_t  rc;

    switch (req->state) {

    case ngx_http_flowscale_comfy_st_head:
        rc = ngx_http_flowscale_comfy_parse_head(&req->cc);

        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_flowscale_comfy_req_body(req);

    case ngx_http_flowscale_comfy_st_length:
        return (req->body.last == req->body.end) ? NGX_OK : NGX_AGAIN;

    case ngx_http_flowscale_comfy_st_chunked:
        return ngx_http_flowscale_comfy_req_chunked(req);

    default: /* until the server closes */
        return NGX_AGAIN;
    }
}


static ngx_int_t
ngx_http_flowscale_comfy_req_header(ngx_http_flowscale_comfy_conn_t *cc,
    ngx_str_t *name, ngx_str_t *value)
{
    off_t                            n;
    ngx_http_flowscale_comfy_req_t  *req;

    req = (ngx_http_flowscale_comfy_req_t *) cc;

    if (name->len == sizeof("Content-Length") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Content-Length",
                           name->len) == 0)
    {
        n = ngx_atoof(value->data, value->len);

        if (n == NGX_ERROR
            || (req->content_length != -1 && req->content_length != n))
        {
            ngx_log_error(NGX_LOG_ERR, &cc->log, 0,
                          "ComfyUI sent an invalid Content-Length \"%V\"",
                          value);
            return NGX_ERROR;
        }

        req->content_length = n;
        return NGX_OK;
    }

    if (name->len == sizeof("Transfer-Encoding") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Transfer-Encoding",
                           name->len) == 0)
    {
        if (value->len == sizeof("chunked") - 1
            && ngx_strncasecmp(value->data, (u_char *) "chunked",
                               value->len) == 0)
        {
            req->chunked_te = 1;
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_ERR, &cc->log, 0,
                      "ComfyUI sent an unsupported Transfer-Encoding \"%V\"",
                      value);
        return NGX_ERROR;
    }

    /* Connection: we asked for "close", so every body ends by itself */

    return NGX_OK;
}


/* the head is complete: choose how the body ends, take what was read */

static ngx_int_t
ngx_http_flowscale_comfy_req_body(ngx_http_flowscale_comfy_req_t *req)
{
    size_t      n, size;
    ngx_buf_t  *in;

    in = req->cc.in;
    n = in->last - in->pos;

    if (req->head
        || req->cc.status.code == NGX_HTTP_NO_CONTENT
        || req->cc.status.code == NGX_HTTP_NOT_MODIFIED)
    {
        return NGX_OK;
    }

    if (req->chunked_te) {
        /* the chunk sizes say how much more will come */
        req->state = ngx_http_flowscale_comfy_st_chunked;
        return ngx_http_flowscale_comfy_req_chunked(req);
    }

    if (req->content_length >= 0) {

        if (req->content_length > NGX_HTTP_FLOWSCALE_COMFY_MAX_BODY) {
            ngx_log_error(NGX_LOG_ERR, &req->cc.log, 0,
                          "ComfyUI sent too big a body: %O bytes",
                          req->content_length);
            return NGX_ERROR;
        }

        if (req->content_length == 0) {
            return NGX_OK;
        }

        if (ngx_http_flowscale_comfy_req_grow(req,
                                              (size_t) req->content_length)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* exactly the announced size: reads stop at its end */
        req->body.end = req->body.start + req->content_length;

        n = ngx_min(n, (size_t) req->content_length);
        req->body.last = ngx_cpymem(req->body.last, in->pos, n);

        req->state = ngx_http_flowscale_comfy_st_length;

        return (req->body.last == req->body.end) ? NGX_OK : NGX_AGAIN;
    }

    size = ngx_max(n, NGX_HTTP_FLOWSCALE_COMFY_BUF);

    if (ngx_http_flowscale_comfy_req_grow(req, size) != NGX_OK) {
        return NGX_ERROR;
    }

    req->body.last = ngx_cpymem(req->body.last, in->pos, n);
    req->state = ngx_http_flowscale_comfy_st_eof;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_flowscale_comfy_req_chunked(ngx_http_flowscale_comfy_req_t *req)
{
    size_t      size;
    ngx_int_t   rc;
    ngx_buf_t  *b;

    b = req->cc.in;

    for ( ;; ) {
        rc = ngx_http_parse_chunked(req->cc.r, b, &req->chunked);

        if (rc == NGX_OK) {
            size = ngx_min((off_t) (b->last - b->pos), req->chunked.size);

            if ((size_t) (req->body.end - req->body.last) < size
                && ngx_http_flowscale_comfy_req_grow(req, size) != NGX_OK)
            {
                return NGX_ERROR;
            }

            req->body.last = ngx_cpymem(req->body.last, b->pos, size);
            b->pos += size;
            req->chunked.size -= size;

            continue;
        }

        if (rc == NGX_DONE) {
            return NGX_OK;
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        ngx_log_error(NGX_LOG_ERR, &req->cc.log, 0,
                      "ComfyUI sent an invalid chunked body");
        return NGX_ERROR;
    }
}


/* room for at least need more body bytes, doubling, within the limit */

static ngx_int_t
ngx_http_flowscale_comfy_req_grow(ngx_http_flowscale_comfy_req_t *req,
    size_t need)
{
    u_char     *p;
    size_t      len, size;
    ngx_buf_t  *b;

    b = &req->body;
    len = b->last - b->start;
    size = b->end - b->start;

    if (need > NGX_HTTP_FLOWSCALE_COMFY_MAX_BODY - len) {
        ngx_log_error(NGX_LOG_ERR, &req->cc.log, 0,
                      "ComfyUI sent too big a body");
        return NGX_ERROR;
    }

    size = ngx_max(size * 2, len + need);
    size = ngx_min(size, NGX_HTTP_FLOWSCALE_COMFY_MAX_BODY);

    p = ngx_palloc(req->cc.pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (b->start) {
        ngx_memcpy(p, b->start, len);
        ngx_pfree(req->cc.pool, b->start);
    }

    b->start = p;
    b->pos = p;
    b->last = p + len;
    b->end = p + size;

    return NGX_OK;
}


static void
ngx_http_flowscale_comfy_req_finish(ngx_http_flowscale_comfy_req_t *req,
    ngx_int_t rc)
{
    ngx_str_t   body;
    ngx_uint_t  status;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &req->cc.log, 0,
                   "flowscale comfy finish: \"%V\" rc:%i status:%ui",
                   &req->cc.target, rc, req->cc.status.code);

    ngx_http_flowscale_comfy_close(&req->cc);

    if (rc == NGX_OK) {
        status = req->cc.status.code;
        body.data = req->body.start ? req->body.start : (u_char *) "";
        body.len = req->body.last - req->body.start;

    } else {
        status = 0;
        ngx_str_set(&body, "");
    }

    req->in_done = 1;

    req->done(req->data, rc, status, &body);

    ngx_destroy_pool(req->cc.pool);
}


/* multipart body of POST /upload/image */


ngx_int_t
ngx_http_flowscale_comfy_upload_body(ngx_pool_t *pool, ngx_str_t *filename,
    ngx_str_t *file_content_type, u_char *data, size_t len,
    ngx_str_t *subfolder, ngx_str_t *body, ngx_str_t *content_type)
{
    u_char      *p, boundary[sizeof("FlowScale") - 1 + 32];
    size_t       size, flen;
    ngx_str_t    ct, sub;
    ngx_uint_t   i, tries;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "flowscale comfy upload body: \"%V\" %uz bytes",
                   filename, len);

    if (file_content_type && file_content_type->len) {
        ct = *file_content_type;

    } else {
        ngx_str_set(&ct, "application/octet-stream");
    }

    if (ngx_strlchr(ct.data, ct.data + ct.len, LF)
        || ngx_strlchr(ct.data, ct.data + ct.len, CR))
    {
        return NGX_ERROR;
    }

    if (subfolder) {
        sub = *subfolder;

    } else {
        ngx_str_set(&sub, "");
    }

    /*
     * a random boundary that the parts do not contain; a clash is all but
     * impossible, but checking it costs one pass over the file
     */

    for (tries = 0; /* void */; tries++) {
        p = ngx_cpymem(boundary, "FlowScale", sizeof("FlowScale") - 1);

        for (i = 0; i < 4; i++) {
            p = ngx_sprintf(p, "%08xD", (uint32_t) ngx_random());
        }

        if (memmem(data, len, boundary, sizeof(boundary)) == NULL
            && memmem(sub.data, sub.len, boundary, sizeof(boundary)) == NULL)
        {
            break;
        }

        if (tries == 8) {
            return NGX_ERROR;
        }
    }

    /*
     * the file name is a quoted-string: quotes and backslashes are escaped
     * (aiohttp, which ComfyUI runs on, unescapes them), line breaks that
     * would end the header are percent-encoded as browsers do
     */

    flen = 0;

    for (i = 0; i < filename->len; i++) {
        switch (filename->data[i]) {
        case '"':
        case '\\':
            flen += 2;
            break;
        case CR:
        case LF:
            flen += 3;
            break;
        default:
            flen++;
        }
    }

    size = 4 * (sizeof("--" CRLF) - 1 + sizeof(boundary) + sizeof(CRLF) - 1)
           + sizeof("Content-Disposition: form-data; name=\"image\"; "
                    "filename=\"\"" CRLF "Content-Type: " CRLF CRLF) - 1
           + flen + ct.len + len
           + sizeof("Content-Disposition: form-data; name=\"type\""
                    CRLF CRLF "input") - 1
           + sizeof("Content-Disposition: form-data; name=\"subfolder\""
                    CRLF CRLF) - 1 + sub.len
           + sizeof("Content-Disposition: form-data; name=\"overwrite\""
                    CRLF CRLF "false") - 1
           + sizeof("----" CRLF) - 1 + sizeof(boundary);

    body->data = ngx_pnalloc(pool, size);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(body->data,
                    "--%*s" CRLF
                    "Content-Disposition: form-data; name=\"image\"; "
                    "filename=\"", sizeof(boundary), boundary);

    for (i = 0; i < filename->len; i++) {
        switch (filename->data[i]) {
        case '"':
        case '\\':
            *p++ = '\\';
            *p++ = filename->data[i];
            break;
        case CR:
            p = ngx_cpymem(p, "%0D", 3);
            break;
        case LF:
            p = ngx_cpymem(p, "%0A", 3);
            break;
        default:
            *p++ = filename->data[i];
        }
    }

    p = ngx_sprintf(p, "\"" CRLF "Content-Type: %V" CRLF CRLF, &ct);
    p = ngx_cpymem(p, data, len);

    p = ngx_sprintf(p,
                    CRLF "--%*s" CRLF
                    "Content-Disposition: form-data; name=\"type\""
                    CRLF CRLF "input"
                    CRLF "--%*s" CRLF
                    "Content-Disposition: form-data; name=\"subfolder\""
                    CRLF CRLF "%V"
                    CRLF "--%*s" CRLF
                    "Content-Disposition: form-data; name=\"overwrite\""
                    CRLF CRLF "false"
                    CRLF "--%*s--" CRLF,
                    sizeof(boundary), boundary, sizeof(boundary), boundary,
                    &sub, sizeof(boundary), boundary,
                    sizeof(boundary), boundary);

    body->len = p - body->data;

    content_type->len = sizeof("multipart/form-data; boundary=") - 1
                        + sizeof(boundary);
    content_type->data = ngx_pnalloc(pool, content_type->len);
    if (content_type->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(content_type->data, "multipart/form-data; boundary=%*s",
                sizeof(boundary), boundary);

    return NGX_OK;
}


/* WebSocket */


ngx_http_flowscale_ws_t *
ngx_http_flowscale_ws_connect(ngx_http_flowscale_peer_t *peer,
    ngx_str_t *path, ngx_msec_t connect_timeout,
    ngx_http_flowscale_ws_open_pt open,
    ngx_http_flowscale_ws_message_pt message,
    ngx_http_flowscale_ws_closed_pt closed, void *data, ngx_log_t *log)
{
    u_char                            keybuf[24], digest[20];
    uint32_t                          nonce[4];
    ngx_str_t                         src, key;
    ngx_buf_t                        *b;
    ngx_uint_t                        i;
    ngx_sha1_t                        sha1;
    ngx_pool_t                       *pool;
    ngx_pool_cleanup_t               *cln;
    ngx_http_flowscale_ws_t          *ws;
    ngx_http_flowscale_comfy_conn_t  *cc;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "flowscale ws connect: \"%V\" to %V", path, &peer->name);

    /*
     * idle connections are closed once, when the shutdown starts: one made
     * later would hold the worker
     */
    if (ngx_exiting) {
        return NULL;
    }

    pool = ngx_create_pool(NGX_HTTP_FLOWSCALE_COMFY_POOL, log);
    if (pool == NULL) {
        return NULL;
    }

    ws = ngx_pcalloc(pool, sizeof(ngx_http_flowscale_ws_t));
    if (ws == NULL) {
        goto failed;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        goto failed;
    }

    cln->handler = ngx_http_flowscale_ws_cleanup;
    cln->data = ws;

    cc = &ws->cc;

    if (ngx_http_flowscale_comfy_init(cc, pool, peer, "GET", path, log)
        != NGX_OK)
    {
        goto failed;
    }

    cc->header = ngx_http_flowscale_ws_header;
    cc->timer.handler = ngx_http_flowscale_ws_timer;
    cc->timer.data = ws;
    cc->timer.cancelable = 1;

    ws->open = open;
    ws->message = message;
    ws->closed = closed;
    ws->data = data;

    for (i = 0; i < 4; i++) {
        nonce[i] = (uint32_t) ngx_random();
    }

    src.data = (u_char *) nonce;
    src.len = sizeof(nonce);
    key.data = keybuf;
    ngx_encode_base64(&key, &src);

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key.data, key.len);
    ngx_sha1_update(&sha1, NGX_HTTP_FLOWSCALE_WS_GUID,
                    sizeof(NGX_HTTP_FLOWSCALE_WS_GUID) - 1);
    ngx_sha1_final(digest, &sha1);

    src.data = digest;
    src.len = sizeof(digest);
    key.data = ws->accept;
    ngx_encode_base64(&key, &src);

    key.data = keybuf;
    key.len = sizeof(keybuf);

    /* the handshake first, then pongs and our close frame */
    b = ngx_create_temp_buf(pool,
                            ngx_max(cc->target.len + cc->name.len + 256,
                                    NGX_HTTP_FLOWSCALE_WS_OUT));
    if (b == NULL) {
        goto failed;
    }

    cc->out = b;

    b->last = ngx_sprintf(b->last,
                          "%V HTTP/1.1" CRLF
                          "Host: %V" CRLF
                          "Upgrade: websocket" CRLF
                          "Connection: Upgrade" CRLF
                          "Sec-WebSocket-Key: %V" CRLF
                          "Sec-WebSocket-Version: 13" CRLF
                          "User-Agent: FlowScale-nginx" CRLF CRLF,
                          &cc->target, &cc->name, &key);

    if (ngx_http_flowscale_comfy_connect(cc, ngx_http_flowscale_ws_handler)
        != NGX_OK)
    {
        ngx_http_flowscale_comfy_post(cc, NGX_ERROR);
        return ws;
    }

    /*
     * a worker that shuts down closes idle connections and does not wait
     * for cancelable timers: the WebSocket must not keep it alive
     */
    cc->peer.connection->idle = 1;

    ngx_add_timer(&cc->timer, connect_timeout);

    return ws;

failed:

    ngx_destroy_pool(pool);
    return NULL;
}


void
ngx_http_flowscale_ws_close(ngx_http_flowscale_ws_t *ws)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ws->cc.log, 0,
                   "flowscale ws close: \"%V\"", &ws->cc.target);

    if (ws->finished) {
        /* inside closed: freed when it returns */
        return;
    }

    if (ws->in_callback) {
        ws->close_requested = 1;
        return;
    }

    ngx_http_flowscale_ws_goodbye(ws, 1000);
    ngx_http_flowscale_comfy_close(&ws->cc);
    ngx_destroy_pool(ws->cc.pool);
}


static void
ngx_http_flowscale_ws_handler(ngx_event_t *ev)
{
    ngx_int_t                         rc;
    ngx_connection_t                 *c;
    ngx_http_flowscale_ws_t          *ws;
    ngx_http_flowscale_comfy_conn_t  *cc;

    c = ev->data;
    ws = c->data;
    cc = &ws->cc;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "flowscale ws %s event: \"%V\"",
                   ev->write ? "write" : "read", &cc->target);

    if (c->close) {
        /* ngx_close_idle_connections(): the worker is shutting down */
        ngx_http_flowscale_ws_goodbye(ws, 1001);
        ngx_http_flowscale_ws_finish(ws, NGX_DONE);
        return;
    }

    if (!cc->connected) {
        if (ngx_http_flowscale_comfy_test_connect(c) != NGX_OK) {
            ngx_http_flowscale_ws_finish(ws, NGX_ERROR);
            return;
        }

        cc->connected = 1;
    }

    if (ws->state == ngx_http_flowscale_ws_st_head
        && cc->out->pos < cc->out->last)
    {
        cc->log.action = "sending WebSocket handshake to ComfyUI";

        rc = ngx_http_flowscale_comfy_send(cc);

        if (rc == NGX_ERROR) {
            ngx_http_flowscale_ws_finish(ws, NGX_ERROR);
            return;
        }

        if (rc == NGX_AGAIN) {
            return;
        }

        cc->log.action = "reading WebSocket handshake from ComfyUI";
    }

    if (!ws->close_received) {
        rc = ngx_http_flowscale_ws_read(ws);

        if (rc == NGX_DECLINED) {
            /* closed and freed from a callback */
            return;
        }

        if (rc == NGX_ERROR) {
            ngx_http_flowscale_ws_finish(ws, NGX_ERROR);
            return;
        }
    }

    rc = ngx_http_flowscale_ws_flush(ws);

    if (rc == NGX_ERROR) {
        ngx_http_flowscale_ws_finish(ws,
                                     ws->close_received ? NGX_OK : NGX_ERROR);
        return;
    }

    if (ws->close_received) {
        if (rc == NGX_OK) {
            ngx_http_flowscale_ws_finish(ws, NGX_OK);
            return;
        }

        /* our close frame waits for room: give it a moment, not forever */
        if (!cc->timer.timer_set) {
            ngx_add_timer(&cc->timer, NGX_HTTP_FLOWSCALE_WS_LINGER);
        }

        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_flowscale_ws_finish(ws, NGX_ERROR);
    }
}


static void
ngx_http_flowscale_ws_timer(ngx_event_t *ev)
{
    ngx_http_flowscale_ws_t  *ws;

    ws = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ws->cc.log, 0,
                   "flowscale ws timer: \"%V\"", &ws->cc.target);

    if (ws->cc.rc != NGX_OK) {
        ngx_http_flowscale_ws_finish(ws, ws->cc.rc);
        return;
    }

    if (ws->close_received) {
        ngx_http_flowscale_ws_finish(ws, NGX_OK);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, &ws->cc.log, NGX_ETIMEDOUT,
                  "ComfyUI WebSocket handshake timed out");

    ngx_http_flowscale_ws_finish(ws, NGX_HTTP_GATEWAY_TIME_OUT);
}


/* sends queued control frames once the handshake is out */

static ngx_int_t
ngx_http_flowscale_ws_flush(ngx_http_flowscale_ws_t *ws)
{
    if (ws->state == ngx_http_flowscale_ws_st_head
        || ws->cc.out->pos == ws->cc.out->last)
    {
        return NGX_OK;
    }

    return ngx_http_flowscale_comfy_send(&ws->cc);
}


/*
 * reads until EAGAIN: NGX_AGAIN, NGX_OK (close frame received), NGX_ERROR,
 * NGX_DECLINED (ws freed by a callback: touch nothing)
 */

static ngx_int_t
ngx_http_flowscale_ws_read(ngx_http_flowscale_ws_t *ws)
{
    size_t             n;
    ssize_t            size;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = ws->cc.peer.connection;
    b = ws->cc.in;

    for ( ;; ) {

        if (!c->read->ready) {
            return NGX_AGAIN;
        }

        if (ws->state == ngx_http_flowscale_ws_st_head) {
            if (ngx_http_flowscale_comfy_head_room(&ws->cc) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (b->pos > b->start) {
            /* at most an incomplete frame header or control frame is left */
            n = b->last - b->pos;
            ngx_memmove(b->start, b->pos, n);
            b->pos = b->start;
            b->last = b->start + n;
        }

        size = c->recv(c, b->last, b->end - b->last);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "flowscale ws recv: %z", size);

        if (size == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (size == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (size == 0) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "ComfyUI closed the WebSocket connection "
                          "without a close frame");
            return NGX_ERROR;
        }

        b->last += size;

        if (ws->state == ngx_http_flowscale_ws_st_head) {
            rc = ngx_http_flowscale_ws_head(ws);

        } else {
            rc = ngx_http_flowscale_ws_frames(ws);
        }

        if (rc != NGX_AGAIN) {
            return rc;
        }
    }
}


static ngx_int_t
ngx_http_flowscale_ws_header(ngx_http_flowscale_comfy_conn_t *cc,
    ngx_str_t *name, ngx_str_t *value)
{
    ngx_http_flowscale_ws_t  *ws;

    ws = (ngx_http_flowscale_ws_t *) cc;

    if (name->len == sizeof("Upgrade") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Upgrade", name->len) == 0)
    {
        ws->upgrade = (value->len == sizeof("websocket") - 1
                       && ngx_strncasecmp(value->data, (u_char *) "websocket",
                                          value->len) == 0);

    } else if (name->len == sizeof("Connection") - 1
               && ngx_strncasecmp(name->data, (u_char *) "Connection",
                                  name->len) == 0)
    {
        ws->connection_upgrade = (ngx_strlcasestrn(value->data,
                                                   value->data + value->len,
                                                   (u_char *) "upgrade",
                                                   sizeof("upgrade") - 2)
                                  != NULL);

    } else if (name->len == sizeof("Sec-WebSocket-Accept") - 1
               && ngx_strncasecmp(name->data,
                                  (u_char *) "Sec-WebSocket-Accept",
                                  name->len) == 0)
    {
        ws->accept_ok = (value->len == sizeof(ws->accept)
                         && ngx_memcmp(value->data, ws->accept,
                                       sizeof(ws->accept)) == 0);

    } else if (name->len == sizeof("Sec-WebSocket-Extensions") - 1
               && ngx_strncasecmp(name->data,
                                  (u_char *) "Sec-WebSocket-Extensions",
                                  name->len) == 0)
    {
        ws->extensions = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_ws_head(ngx_http_flowscale_ws_t *ws)
{
    ngx_int_t  rc;

    rc = ngx_http_flowscale_comfy_parse_head(&ws->cc);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ws->cc.status.code != NGX_HTTP_SWITCHING_PROTOCOLS) {
        ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                      "ComfyUI answered the WebSocket handshake with %ui",
                      ws->cc.status.code);
        return NGX_ERROR;
    }

    if (!ws->upgrade || !ws->connection_upgrade || !ws->accept_ok) {
        ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                      "ComfyUI sent an invalid WebSocket handshake");
        return NGX_ERROR;
    }

    if (ws->extensions) {
        /* we offered none: compressed frames could not be read */
        ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                      "ComfyUI negotiated a WebSocket extension "
                      "that was not offered");
        return NGX_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, &ws->cc.log, 0,
                   "flowscale ws open");

    /* an open WebSocket is idle between runs: no timeout */
    if (ws->cc.timer.timer_set) {
        ngx_del_timer(&ws->cc.timer);
    }

    ws->state = ngx_http_flowscale_ws_st_frame;
    ws->cc.log.action = "reading WebSocket from ComfyUI";

    ws->in_callback = 1;
    ws->open(ws->data);
    ws->in_callback = 0;

    if (ws->close_requested) {
        ws->close_requested = 0;
        ngx_http_flowscale_ws_close(ws);
        return NGX_DECLINED;
    }

    /* the first frames may have come with the handshake */
    return ngx_http_flowscale_ws_frames(ws);
}


/*
 * Frames from cc->in.  Data payloads are consumed as they come (text into
 * ws->msg, binary dropped), so only an incomplete frame header or control
 * frame stays in the buffer; a whole unfragmented text frame already in
 * the buffer is delivered from there without a copy.
 */

static ngx_int_t
ngx_http_flowscale_ws_frames(ngx_http_flowscale_ws_t *ws)
{
    u_char      *p, *text;
    size_t       avail, hlen, size;
    uint64_t     len;
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_uint_t   i, fin, opcode;

    b = ws->cc.in;

    for ( ;; ) {

        if (ws->state == ngx_http_flowscale_ws_st_payload) {
            size = (size_t) ngx_min((uint64_t) (b->last - b->pos),
                                    ws->remaining);

            if (ws->message_opcode == NGX_HTTP_FLOWSCALE_WS_TEXT) {
                ngx_memcpy(ws->msg + ws->msg_len, b->pos, size);
                ws->msg_len += size;
            }

            b->pos += size;
            ws->remaining -= size;

            if (ws->remaining) {
                return NGX_AGAIN;
            }

            ws->state = ngx_http_flowscale_ws_st_frame;

            if (!ws->fin) {
                continue;
            }

            opcode = ws->message_opcode;
            ws->message_opcode = 0;

            if (opcode != NGX_HTTP_FLOWSCALE_WS_TEXT) {
                /* binary: previews, not ours to read */
                continue;
            }

            text = ws->msg;
            size = ws->msg_len;
            ws->msg_len = 0;

            rc = ngx_http_flowscale_ws_deliver(ws, text, size);
            if (rc != NGX_OK) {
                return rc;
            }

            if (ws->msg_size > NGX_HTTP_FLOWSCALE_WS_KEEP) {
                /* one huge message should not pin its memory for good */
                ngx_free(ws->msg);
                ws->msg = NULL;
                ws->msg_size = 0;
            }

            continue;
        }

        p = b->pos;
        avail = b->last - p;

        if (avail < 2) {
            return NGX_AGAIN;
        }

        fin = p[0] & 0x80;
        opcode = p[0] & 0x0f;
        len = p[1] & 0x7f;

        hlen = 2;

        if (len == 126) {
            hlen += 2;

        } else if (len == 127) {
            hlen += 8;
        }

        if (p[1] & 0x80) {
            ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                          "ComfyUI sent a masked WebSocket frame");
            ngx_http_flowscale_ws_goodbye(ws, 1002);
            return NGX_ERROR;
        }

        if (p[0] & 0x70) {
            ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                          "ComfyUI sent a WebSocket frame with "
                          "reserved bits set");
            ngx_http_flowscale_ws_goodbye(ws, 1002);
            return NGX_ERROR;
        }

        if (avail < hlen) {
            return NGX_AGAIN;
        }

        if (len == 126) {
            len = ((uint64_t) p[2] << 8) | p[3];

        } else if (len == 127) {
            len = 0;

            for (i = 2; i < 10; i++) {
                len = (len << 8) | p[i];
            }
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &ws->cc.log, 0,
                       "flowscale ws frame: fin:%ui opcode:%ui len:%uL",
                       (ngx_uint_t) (fin ? 1 : 0), opcode, len);

        if (opcode >= NGX_HTTP_FLOWSCALE_WS_CLOSE) {

            if (!fin || len > 125) {
                ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                              "ComfyUI sent an invalid WebSocket "
                              "control frame");
                ngx_http_flowscale_ws_goodbye(ws, 1002);
                return NGX_ERROR;
            }

            if (avail < hlen + len) {
                return NGX_AGAIN;
            }

            b->pos += hlen + len;

            rc = ngx_http_flowscale_ws_control(ws, opcode, p + hlen,
                                               (size_t) len);
            if (rc != NGX_AGAIN) {
                return rc;
            }

            continue;
        }

        if (opcode == NGX_HTTP_FLOWSCALE_WS_CONT) {
            if (ws->message_opcode == 0) {
                ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                              "ComfyUI sent an unexpected WebSocket "
                              "continuation frame");
                ngx_http_flowscale_ws_goodbye(ws, 1002);
                return NGX_ERROR;
            }

        } else if (opcode == NGX_HTTP_FLOWSCALE_WS_TEXT
                   || opcode == NGX_HTTP_FLOWSCALE_WS_BINARY)
        {
            if (ws->message_opcode != 0) {
                ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                              "ComfyUI sent a new WebSocket message inside "
                              "a fragmented one");
                ngx_http_flowscale_ws_goodbye(ws, 1002);
                return NGX_ERROR;
            }

            ws->message_opcode = opcode;

        } else {
            ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                          "ComfyUI sent a WebSocket frame with "
                          "unknown opcode %ui", opcode);
            ngx_http_flowscale_ws_goodbye(ws, 1002);
            return NGX_ERROR;
        }

        if (ws->message_opcode == NGX_HTTP_FLOWSCALE_WS_TEXT) {

            if (len > NGX_HTTP_FLOWSCALE_WS_MAX_MESSAGE - ws->msg_len) {
                ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                              "ComfyUI sent too big a WebSocket message");
                ngx_http_flowscale_ws_goodbye(ws, 1009);
                return NGX_ERROR;
            }

            if (fin && opcode == NGX_HTTP_FLOWSCALE_WS_TEXT
                && avail - hlen >= len)
            {
                b->pos += hlen + len;
                ws->message_opcode = 0;

                rc = ngx_http_flowscale_ws_deliver(ws, p + hlen,
                                                   (size_t) len);
                if (rc != NGX_OK) {
                    return rc;
                }

                continue;
            }

            if (ngx_http_flowscale_ws_reserve(ws, ws->msg_len + len)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        b->pos += hlen;

        ws->fin = fin ? 1 : 0;
        ws->remaining = len;
        ws->state = ngx_http_flowscale_ws_st_payload;
    }
}


/* NGX_AGAIN: go on reading; NGX_OK: close frame received */

static ngx_int_t
ngx_http_flowscale_ws_control(ngx_http_flowscale_ws_t *ws,
    ngx_uint_t opcode, u_char *payload, size_t len)
{
    ngx_uint_t  code;

    switch (opcode) {

    case NGX_HTTP_FLOWSCALE_WS_PING:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ws->cc.log, 0,
                       "flowscale ws ping: %uz bytes", len);

        /* a pong that finds no room is dropped: only the last one counts */
        (void) ngx_http_flowscale_ws_frame(ws, NGX_HTTP_FLOWSCALE_WS_PONG,
                                           payload, len);
        return NGX_AGAIN;

    case NGX_HTTP_FLOWSCALE_WS_PONG:
        return NGX_AGAIN;

    case NGX_HTTP_FLOWSCALE_WS_CLOSE:
        code = (len >= 2) ? (ngx_uint_t) ((payload[0] << 8) | payload[1])
                          : 1005;

        ngx_log_error(NGX_LOG_INFO, &ws->cc.log, 0,
                      "ComfyUI closed the WebSocket with code %ui", code);

        ws->close_received = 1;

        if (!ws->close_sent) {
            /* echo the status code, as RFC 6455 section 5.5.1 suggests */
            (void) ngx_http_flowscale_ws_frame(ws,
                                               NGX_HTTP_FLOWSCALE_WS_CLOSE,
                                               payload, (len >= 2) ? 2 : 0);
            ws->close_sent = 1;
        }

        return NGX_OK;

    default:
        ngx_log_error(NGX_LOG_ERR, &ws->cc.log, 0,
                      "ComfyUI sent a WebSocket frame with "
                      "unknown opcode %ui", opcode);
        ngx_http_flowscale_ws_goodbye(ws, 1002);
        return NGX_ERROR;
    }
}


/* ws->msg holds at least need bytes; it outlives one message if small */

static ngx_int_t
ngx_http_flowscale_ws_reserve(ngx_http_flowscale_ws_t *ws, size_t need)
{
    u_char  *p;
    size_t   size;

    if (need <= ws->msg_size) {
        return NGX_OK;
    }

    size = ngx_max(ws->msg_size * 2, need);
    size = ngx_max(size, 4096);
    size = ngx_min(size, NGX_HTTP_FLOWSCALE_WS_MAX_MESSAGE);

    p = ngx_alloc(size, &ws->cc.log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ws->msg) {
        ngx_memcpy(p, ws->msg, ws->msg_len);
        ngx_free(ws->msg);
    }

    ws->msg = p;
    ws->msg_size = size;

    return NGX_OK;
}


/* NGX_OK, or NGX_DECLINED when the callback closed (and so freed) the ws */

static ngx_int_t
ngx_http_flowscale_ws_deliver(ngx_http_flowscale_ws_t *ws, u_char *text,
    size_t len)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ws->cc.log, 0,
                   "flowscale ws message: %uz bytes", len);

    ws->in_callback = 1;
    ws->message(ws->data, text, len);
    ws->in_callback = 0;

    if (ws->close_requested) {
        ws->close_requested = 0;
        ngx_http_flowscale_ws_close(ws);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* queues a masked control frame of at most 125 bytes */

static ngx_int_t
ngx_http_flowscale_ws_frame(ngx_http_flowscale_ws_t *ws, ngx_uint_t opcode,
    u_char *payload, size_t len)
{
    u_char      mask[4];
    size_t      n;
    uint32_t    key;
    ngx_buf_t  *b;
    ngx_uint_t  i;

    b = ws->cc.out;

    if ((size_t) (b->end - b->last) < 6 + len && b->pos > b->start) {
        n = b->last - b->pos;
        ngx_memmove(b->start, b->pos, n);
        b->pos = b->start;
        b->last = b->start + n;
    }

    if ((size_t) (b->end - b->last) < 6 + len) {
        return NGX_DECLINED;
    }

    /* RFC 6455 wants every client frame masked, with a fresh key */
    key = (uint32_t) ngx_random();
    ngx_memcpy(mask, &key, 4);

    *b->last++ = (u_char) (0x80 | opcode);
    *b->last++ = (u_char) (0x80 | len);
    b->last = ngx_cpymem(b->last, mask, 4);

    for (i = 0; i < len; i++) {
        *b->last++ = payload[i] ^ mask[i & 3];
    }

    return NGX_OK;
}


/*
 * A close frame on the way out, best effort: one send, whatever it gives,
 * as the connection is closed right after.
 */

static void
ngx_http_flowscale_ws_goodbye(ngx_http_flowscale_ws_t *ws, ngx_uint_t code)
{
    u_char             payload[2];
    ngx_connection_t  *c;

    c = ws->cc.peer.connection;

    if (c == NULL || ws->state == ngx_http_flowscale_ws_st_head
        || ws->close_sent)
    {
        return;
    }

    payload[0] = (u_char) (code >> 8);
    payload[1] = (u_char) (code & 0xff);

    ws->close_sent = 1;

    if (ngx_http_flowscale_ws_frame(ws, NGX_HTTP_FLOWSCALE_WS_CLOSE,
                                    payload, 2)
        != NGX_OK)
    {
        return;
    }

    c->log_error = NGX_ERROR_IGNORE_ECONNRESET;

    (void) ngx_http_flowscale_comfy_send(&ws->cc);
}


static void
ngx_http_flowscale_ws_finish(ngx_http_flowscale_ws_t *ws, ngx_int_t rc)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &ws->cc.log, 0,
                   "flowscale ws finish: \"%V\" rc:%i", &ws->cc.target, rc);

    ngx_http_flowscale_comfy_close(&ws->cc);

    ws->finished = 1;

    ws->closed(ws->data, rc);

    ngx_destroy_pool(ws->cc.pool);
}


static void
ngx_http_flowscale_ws_cleanup(void *data)
{
    ngx_http_flowscale_ws_t  *ws = data;

    if (ws->msg) {
        ngx_free(ws->msg);
        ws->msg = NULL;
    }
}
