
/*
 * FlowScale for nginx: the event-driven HTTP/1.1 and WebSocket client that
 * talks to ComfyUI backends from inside a worker without ever blocking it.
 */


#ifndef _NGX_HTTP_FLOWSCALE_COMFY_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_COMFY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* status line and headers of a ComfyUI response */
#define NGX_HTTP_FLOWSCALE_COMFY_MAX_HEADER   (64 * 1024)

/* /object_info of a server with many custom nodes is several megabytes */
#define NGX_HTTP_FLOWSCALE_COMFY_MAX_BODY     (64 * 1024 * 1024)

/* one (reassembled) text message on /ws */
#define NGX_HTTP_FLOWSCALE_WS_MAX_MESSAGE     (16 * 1024 * 1024)


typedef struct ngx_http_flowscale_comfy_req_s  ngx_http_flowscale_comfy_req_t;
typedef struct ngx_http_flowscale_ws_s         ngx_http_flowscale_ws_t;


typedef struct {
    struct sockaddr                *sockaddr;
    socklen_t                       socklen;
    ngx_str_t                       name;   /* "127.0.0.1:8188": Host, logs */
} ngx_http_flowscale_peer_t;


/*
 * rc is NGX_OK with the HTTP status and the whole body, or NGX_ERROR (connect
 * or I/O error, invalid or too big response) or NGX_HTTP_GATEWAY_TIME_OUT,
 * both with status 0 and an empty body.  The body lives in the request's
 * pool, which is destroyed right after done returns.
 */
typedef void (*ngx_http_flowscale_comfy_done_pt)(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);

/*
 * Starts "METHOD path HTTP/1.1" to the peer; method, path, content type and
 * body are copied; body and content_type may be NULL.  timeout bounds the
 * whole exchange (connect, send, response).  Returns NULL on an immediate
 * failure (no memory, bad arguments), and then done is never called;
 * otherwise done is called exactly once, never from inside this call,
 * unless the request is cancelled first.  The peer name is copied too.
 */
ngx_http_flowscale_comfy_req_t *ngx_http_flowscale_comfy_request(
    ngx_http_flowscale_peer_t *peer, const char *method, ngx_str_t *path,
    ngx_str_t *content_type, ngx_str_t *body, ngx_msec_t timeout,
    ngx_http_flowscale_comfy_done_pt done, void *data, ngx_log_t *log);

/* done is not called afterwards; all memory is freed; a no-op inside done */
void ngx_http_flowscale_comfy_cancel(ngx_http_flowscale_comfy_req_t *req);

/*
 * multipart/form-data body of POST /upload/image: an "image" file part and
 * the fields "type"="input", "subfolder" (NULL for "") and
 * "overwrite"="false"; body and content_type (with the boundary) are
 * allocated from pool.
 */
ngx_int_t ngx_http_flowscale_comfy_upload_body(ngx_pool_t *pool,
    ngx_str_t *filename, ngx_str_t *file_content_type, u_char *data,
    size_t len, ngx_str_t *subfolder, ngx_str_t *body,
    ngx_str_t *content_type);


/*
 * WebSocket client (RFC 6455, no extensions) for GET /ws?clientId=C.
 *
 * open: the handshake succeeded.
 * message: a whole text message; text is valid only during the call.
 * closed: rc is NGX_OK after a close frame from the server, NGX_ERROR after
 * a connect, handshake, protocol or I/O error (including the server going
 * away without a close frame), NGX_HTTP_GATEWAY_TIME_OUT when connecting
 * and the handshake took longer than connect_timeout, NGX_DONE when the
 * worker is shutting down.  The ws is freed after closed returns.
 *
 * Any callback may call ngx_http_flowscale_ws_close(); closed is called
 * exactly once unless ngx_http_flowscale_ws_close() is called first, and
 * never from inside ngx_http_flowscale_ws_connect().  Returns NULL on an
 * immediate failure (no memory, bad path, worker exiting): no callback then.
 */
typedef void (*ngx_http_flowscale_ws_open_pt)(void *data);
typedef void (*ngx_http_flowscale_ws_message_pt)(void *data, u_char *text,
    size_t len);
typedef void (*ngx_http_flowscale_ws_closed_pt)(void *data, ngx_int_t rc);

ngx_http_flowscale_ws_t *ngx_http_flowscale_ws_connect(
    ngx_http_flowscale_peer_t *peer, ngx_str_t *path,
    ngx_msec_t connect_timeout, ngx_http_flowscale_ws_open_pt open,
    ngx_http_flowscale_ws_message_pt message,
    ngx_http_flowscale_ws_closed_pt closed, void *data, ngx_log_t *log);

/* sends a close frame if it can, closes and frees; closed is not called */
void ngx_http_flowscale_ws_close(ngx_http_flowscale_ws_t *ws);


#endif /* _NGX_HTTP_FLOWSCALE_COMFY_H_INCLUDED_ */
