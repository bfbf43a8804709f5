
/*
 * FlowScale for nginx: the LISTEN connection.  Each worker keeps one
 * non-blocking PostgreSQL connection of its own that listens on channel
 * "flowscale_keys"; revoke_api_key, regenerate_api_key, set_project_auth
 * (and any change of the keys and projects tables, through triggers)
 * notify it, and the shared key cache drops what changed.  On channel
 * "flowscale_runs", DELETE L/runs/ID on another nginx front reaches the
 * front that has the run.
 *
 * It reconnects by itself, with backoff.  While it is down, cached keys
 * keep serving until their TTL ends (the API stays up when the database
 * is down); once LISTEN is in place again the whole cache is flushed,
 * since notifications may have been missed.  A periodic "SELECT 1" finds
 * a connection that died without a word.
 *
 * Modelled on the pool (ngx_http_flowscale_pg.c): libpq in non-blocking
 * mode, its socket watched by nginx with the pool's level-triggered
 * events (ngx_http_flowscale_pg_watch),
 * PQsendQueryParams only, PQconsumeInput + PQnotifies as data arrives.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_auth.h"
#include "ngx_http_flowscale_pg.h"


#define NGX_HTTP_FLOWSCALE_LISTEN_CONNECT_TIMEOUT  5000
#define NGX_HTTP_FLOWSCALE_LISTEN_BACKOFF_MIN       100
#define NGX_HTTP_FLOWSCALE_LISTEN_BACKOFF_MAX      2000
#define NGX_HTTP_FLOWSCALE_LISTEN_PING            15000
#define NGX_HTTP_FLOWSCALE_LISTEN_PING_TIMEOUT    10000


typedef enum {
    NGX_HTTP_FLOWSCALE_LISTEN_CLOSED = 0,
    NGX_HTTP_FLOWSCALE_LISTEN_CONNECTING,
    NGX_HTTP_FLOWSCALE_LISTEN_SUBSCRIBING,    /* LISTEN sent */
    NGX_HTTP_FLOWSCALE_LISTEN_READY
} ngx_http_flowscale_listen_state_e;


typedef struct {
    char                               *conninfo;
    PGconn                             *pg;
    ngx_connection_t                   *c;
    ngx_http_flowscale_listen_state_e   state;
    ngx_event_t                         timer;     /* reconnect, ping */
    ngx_msec_t                          backoff;
    ngx_log_t                          *log;
    ngx_uint_t                          failures;  /* in a row */
    unsigned                            pinging:1;
    unsigned                            exiting:1;
} ngx_http_flowscale_listen_t;


static void ngx_http_flowscale_listen_connect(void);
static ngx_int_t ngx_http_flowscale_listen_wrap(void);
static void ngx_http_flowscale_listen_handler(ngx_event_t *ev);
static void ngx_http_flowscale_listen_poll(void);
static void ngx_http_flowscale_listen_send(const char *sql);
static void ngx_http_flowscale_listen_read(void);
static void ngx_http_flowscale_listen_timer(ngx_event_t *ev);
static void ngx_http_flowscale_listen_lost(const char *why);
static void ngx_http_flowscale_listen_close(void);


static ngx_http_flowscale_listen_t  ngx_http_flowscale_listen;


ngx_int_t
ngx_http_flowscale_listen_init_process(ngx_cycle_t *cycle)
{
    ngx_http_flowscale_listen_t     *ls = &ngx_http_flowscale_listen;
    ngx_http_flowscale_main_conf_t  *fmcf;

    ngx_memzero(ls, sizeof(ngx_http_flowscale_listen_t));

    fmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_flowscale_module);

    if (fmcf == NULL || fmcf->db == NULL || fmcf->shm_zone == NULL
        || fmcf->deployments.nelts == 0)
    {
        return NGX_OK;
    }

    ls->conninfo = (char *) fmcf->db->conninfo.data;
    ls->log = cycle->log;
    ls->backoff = NGX_HTTP_FLOWSCALE_LISTEN_BACKOFF_MIN;

    ls->timer.handler = ngx_http_flowscale_listen_timer;
    ls->timer.data = ls;
    ls->timer.log = cycle->log;
    ls->timer.cancelable = 1;

    /* right away, from the event loop */
    ngx_add_timer(&ls->timer, 1);

    return NGX_OK;
}


void
ngx_http_flowscale_listen_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    ls->exiting = 1;

    if (ls->timer.timer_set) {
        ngx_del_timer(&ls->timer);
    }

    ngx_http_flowscale_listen_close();
}


static void
ngx_http_flowscale_listen_timer(ngx_event_t *ev)
{
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    if (ls->exiting || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    switch (ls->state) {

    case NGX_HTTP_FLOWSCALE_LISTEN_CLOSED:
        ngx_http_flowscale_listen_connect();
        return;

    case NGX_HTTP_FLOWSCALE_LISTEN_READY:
        if (ls->pinging) {
            ngx_http_flowscale_listen_lost("no answer to a ping");
            return;
        }

        ls->pinging = 1;
        ngx_http_flowscale_listen_send("SELECT 1");
        return;

    default:
        return;
    }
}


static void
ngx_http_flowscale_listen_connect(void)
{
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    ls->pg = PQconnectStart(ls->conninfo);

    if (ls->pg == NULL || PQstatus(ls->pg) == CONNECTION_BAD
        || PQsetnonblocking(ls->pg, 1) != 0)
    {
        ngx_http_flowscale_listen_lost("cannot start a connection");
        return;
    }

    ls->state = NGX_HTTP_FLOWSCALE_LISTEN_CONNECTING;

    if (ngx_http_flowscale_listen_wrap() != NGX_OK) {
        ngx_http_flowscale_listen_lost("cannot watch its socket");
        return;
    }

    ngx_add_timer(ls->c->read, NGX_HTTP_FLOWSCALE_LISTEN_CONNECT_TIMEOUT);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ls->log, 0,
                   "flowscale listen: connecting, fd:%d", ls->c->fd);
}


static ngx_int_t
ngx_http_flowscale_listen_wrap(void)
{
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    return ngx_http_flowscale_pg_watch(ls->pg, &ls->c, ls,
                                       ngx_http_flowscale_listen_handler,
                                       ls->log);
}


static void
ngx_http_flowscale_listen_handler(ngx_event_t *ev)
{
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    if (ev->timedout) {
        ev->timedout = 0;
        ngx_http_flowscale_listen_lost("connect timed out");
        return;
    }

    switch (ls->state) {

    case NGX_HTTP_FLOWSCALE_LISTEN_CONNECTING:
        ngx_http_flowscale_listen_poll();
        return;

    case NGX_HTTP_FLOWSCALE_LISTEN_SUBSCRIBING:
    case NGX_HTTP_FLOWSCALE_LISTEN_READY:
        if (ev->write) {
            switch (PQflush(ls->pg)) {
            case 0:
                if (ngx_http_flowscale_pg_watch_write(ls->c, 0) != NGX_OK) {
                    ngx_http_flowscale_listen_lost("cannot watch its socket");
                }
                return;
            case 1:
                return;
            default:
                ngx_http_flowscale_listen_lost("write failed");
                return;
            }
        }

        ngx_http_flowscale_listen_read();
        return;

    default:
        return;
    }
}


static void
ngx_http_flowscale_listen_poll(void)
{
    PostgresPollingStatusType     rc;
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    rc = PQconnectPoll(ls->pg);

    /* libpq may move to another socket while it tries addresses */
    if (PQsocket(ls->pg) != ls->c->fd) {
        ngx_http_flowscale_pg_unwatch(&ls->c);

        if (ngx_http_flowscale_listen_wrap() != NGX_OK) {
            ngx_http_flowscale_listen_lost("cannot watch its socket");
            return;
        }

        ngx_add_timer(ls->c->read, NGX_HTTP_FLOWSCALE_LISTEN_CONNECT_TIMEOUT);
    }

    if (ngx_http_flowscale_pg_watch_write(ls->c, rc == PGRES_POLLING_WRITING)
        != NGX_OK)
    {
        ngx_http_flowscale_listen_lost("cannot watch its socket");
        return;
    }

    switch (rc) {

    case PGRES_POLLING_OK:
        if (ls->c->read->timer_set) {
            ngx_del_timer(ls->c->read);
        }

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ls->log, 0,
                       "flowscale listen: connected");

        ls->state = NGX_HTTP_FLOWSCALE_LISTEN_SUBSCRIBING;
        ngx_http_flowscale_listen_send("LISTEN flowscale_keys; "
                                       "LISTEN flowscale_runs");
        return;

    case PGRES_POLLING_FAILED:
        ngx_http_flowscale_listen_lost(PQerrorMessage(ls->pg));
        return;

    default:
        return;
    }
}


static void
ngx_http_flowscale_listen_send(const char *sql)
{
    int                           rc;
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    /* the simple protocol: the LISTENs go as one string */
    if (!PQsendQuery(ls->pg, sql)) {
        ngx_http_flowscale_listen_lost(PQerrorMessage(ls->pg));
        return;
    }

    rc = PQflush(ls->pg);

    if (rc == -1) {
        ngx_http_flowscale_listen_lost(PQerrorMessage(ls->pg));
        return;
    }

    if (ngx_http_flowscale_pg_watch_write(ls->c, rc == 1) != NGX_OK) {
        ngx_http_flowscale_listen_lost("cannot watch its socket");
        return;
    }

    if (ls->state == NGX_HTTP_FLOWSCALE_LISTEN_READY) {
        /* the ping's deadline */
        ngx_add_timer(&ls->timer, NGX_HTTP_FLOWSCALE_LISTEN_PING_TIMEOUT);
    }
}


static void
ngx_http_flowscale_listen_read(void)
{
    PGnotify                     *n;
    PGresult                     *res;
    ngx_uint_t                    failed, level;
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    if (!PQconsumeInput(ls->pg) || PQstatus(ls->pg) == CONNECTION_BAD) {
        ngx_http_flowscale_listen_lost(PQerrorMessage(ls->pg));
        return;
    }

    failed = 0;

    /* the LISTEN or a ping: read to the end */
    while (PQtransactionStatus(ls->pg) == PQTRANS_ACTIVE
           && !PQisBusy(ls->pg))
    {
        res = PQgetResult(ls->pg);

        if (res == NULL) {
            if (ls->state == NGX_HTTP_FLOWSCALE_LISTEN_SUBSCRIBING) {
                /*
                 * Listening from now on: anything that changed before is
                 * covered by dropping the whole cache.
                 */
                ls->state = NGX_HTTP_FLOWSCALE_LISTEN_READY;
                ls->backoff = NGX_HTTP_FLOWSCALE_LISTEN_BACKOFF_MIN;

                level = ls->failures ? NGX_LOG_NOTICE : NGX_LOG_INFO;

                ngx_log_error(level, ls->log, 0, "flowscale: listening for "
                              "API key changes; key cache flushed");

                ls->failures = 0;
                ngx_http_flowscale_auth_flush(ls->log);

            } else {
                ls->pinging = 0;
            }

            if (ls->timer.timer_set) {
                ngx_del_timer(&ls->timer);
            }

            ngx_add_timer(&ls->timer, NGX_HTTP_FLOWSCALE_LISTEN_PING);
            break;
        }

        if (PQresultStatus(res) != PGRES_COMMAND_OK
            && PQresultStatus(res) != PGRES_TUPLES_OK)
        {
            failed = 1;
        }

        PQclear(res);
    }

    if (failed) {
        ngx_http_flowscale_listen_lost(PQerrorMessage(ls->pg));
        return;
    }

    while ((n = PQnotifies(ls->pg)) != NULL) {

        if (ngx_strcmp(n->relname, "flowscale_keys") == 0) {
            ngx_http_flowscale_auth_notify((u_char *) n->extra,
                                           ngx_strlen(n->extra), ls->log);

        } else if (ngx_strcmp(n->relname, "flowscale_runs") == 0) {
            ngx_http_flowscale_cancel_notify((u_char *) n->extra,
                                             ngx_strlen(n->extra), ls->log);
        }

        PQfreemem(n);
    }
}


/* the connection is gone or never came: drop it, try again later */

static void
ngx_http_flowscale_listen_lost(const char *why)
{
    size_t                        len;
    ngx_uint_t                    level;
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    len = why ? ngx_strlen(why) : 0;

    while (len && (why[len - 1] == '\n' || why[len - 1] == ' ')) {
        len--;
    }

    /* once per outage, not at every retry */
    level = ls->failures ? NGX_LOG_INFO : NGX_LOG_WARN;

    ngx_log_error(level, ls->log, 0,
                  "flowscale: the LISTEN connection for API key changes is "
                  "down (%*s); cached keys serve until they expire, "
                  "retrying in %Mms", len, why ? why : "", ls->backoff);

    ls->failures++;

    ngx_http_flowscale_listen_close();

    if (ls->exiting || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (ls->timer.timer_set) {
        ngx_del_timer(&ls->timer);
    }

    ngx_add_timer(&ls->timer, ls->backoff);

    ls->backoff = ngx_min(ls->backoff * 2,
                          NGX_HTTP_FLOWSCALE_LISTEN_BACKOFF_MAX);
}


static void
ngx_http_flowscale_listen_close(void)
{
    ngx_http_flowscale_listen_t  *ls = &ngx_http_flowscale_listen;

    ngx_http_flowscale_pg_unwatch(&ls->c);

    if (ls->pg) {
        PQfinish(ls->pg);
        ls->pg = NULL;
    }

    ls->state = NGX_HTTP_FLOWSCALE_LISTEN_CLOSED;
    ls->pinging = 0;
}
