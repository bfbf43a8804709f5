
/*
 * FlowScale for nginx: PostgreSQL.  The connection string
 * (flowscale_database) is checked when the configuration is loaded; each
 * worker then keeps a small pool of connections that never block: libpq in
 * non-blocking mode with its socket wrapped in an nginx connection,
 * PQsendQueryParams only, results read as the event loop says they arrive.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_stats.h"      /* issue 7 */


#define NGX_HTTP_FLOWSCALE_MAX_POOL         64
#define NGX_HTTP_FLOWSCALE_MAX_WAITING      100000
#define NGX_HTTP_FLOWSCALE_PG_CONNECT_TIMEOUT  5000
#define NGX_HTTP_FLOWSCALE_PG_QUERY_TIMEOUT    30000


typedef enum {
    NGX_HTTP_FLOWSCALE_PG_CLOSED = 0,
    NGX_HTTP_FLOWSCALE_PG_CONNECTING,
    NGX_HTTP_FLOWSCALE_PG_IDLE,
    NGX_HTTP_FLOWSCALE_PG_BUSY
} ngx_http_flowscale_pg_state_e;


typedef struct {
    PGconn                         *pg;
    ngx_connection_t               *c;
    ngx_http_flowscale_pg_state_e   state;
    ngx_http_flowscale_pg_query_t  *query;
    PGresult                       *result;
} ngx_http_flowscale_pg_conn_t;


struct ngx_http_flowscale_pg_query_s {
    ngx_queue_t                     queue;
    ngx_pool_t                     *pool;
    char                           *sql;
    int                             nparams;
    char                          **values;
    int                            *lengths;
    ngx_http_flowscale_pg_done_pt   done;
    void                           *data;
    unsigned                        canceled:1;
};


typedef struct {
    char                           *conninfo;
    ngx_http_flowscale_pg_conn_t   *conns;
    ngx_uint_t                      nconns;
    ngx_queue_t                     waiting;
    ngx_uint_t                      nwaiting;
    ngx_log_t                      *log;
} ngx_http_flowscale_pg_pool_t;


static ngx_int_t ngx_http_flowscale_check_conninfo(ngx_conf_t *cf,
    ngx_str_t *conninfo);
static ngx_int_t ngx_http_flowscale_pg_start(void);
static void ngx_http_flowscale_pg_kicked(ngx_event_t *ev);
static ngx_int_t ngx_http_flowscale_pg_connect(
    ngx_http_flowscale_pg_conn_t *pc);
static ngx_int_t ngx_http_flowscale_pg_wrap(ngx_http_flowscale_pg_conn_t *pc);
static void ngx_http_flowscale_pg_handler(ngx_event_t *ev);
static void ngx_http_flowscale_pg_connect_poll(
    ngx_http_flowscale_pg_conn_t *pc);
static void ngx_http_flowscale_pg_send(ngx_http_flowscale_pg_conn_t *pc,
    ngx_http_flowscale_pg_query_t *q);
static void ngx_http_flowscale_pg_flush(ngx_http_flowscale_pg_conn_t *pc);
static void ngx_http_flowscale_pg_read(ngx_http_flowscale_pg_conn_t *pc);
static void ngx_http_flowscale_pg_finish(ngx_http_flowscale_pg_conn_t *pc,
    const char *error);
static void ngx_http_flowscale_pg_next(ngx_http_flowscale_pg_conn_t *pc);
static void ngx_http_flowscale_pg_fail(ngx_http_flowscale_pg_conn_t *pc,
    const char *error);
static void ngx_http_flowscale_pg_close(ngx_http_flowscale_pg_conn_t *pc);
static void ngx_http_flowscale_pg_complete(ngx_http_flowscale_pg_query_t *q,
    PGresult *res, const char *error);


static ngx_http_flowscale_pg_pool_t  ngx_http_flowscale_pg_pool;

/*
 * New queries start from a posted event, never inside
 * ngx_http_flowscale_pg_query(): a reply may be read at once, and its
 * handler must not run before the caller has its query.
 */
static ngx_event_t                   ngx_http_flowscale_pg_kick;
static ngx_connection_t              ngx_http_flowscale_pg_dummy = { .fd = -1 };


/* flowscale_database "CONNINFO" [pool=N]; */

char *
ngx_http_flowscale_database(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flowscale_main_conf_t *fmcf = conf;

    ngx_int_t                      n;
    ngx_str_t                     *value;
    ngx_http_flowscale_db_conf_t  *db;

    if (fmcf->db) {
        return "is duplicate";
    }

    value = cf->args->elts;

    db = ngx_pcalloc(cf->pool, sizeof(ngx_http_flowscale_db_conf_t));
    if (db == NULL) {
        return NGX_CONF_ERROR;
    }

    db->conninfo = value[1];
    db->pool_size = NGX_HTTP_FLOWSCALE_DEFAULT_POOL;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "pool=", 5) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flowscale_database: unknown parameter \"%V\";"
                               " use pool=N", &value[2]);
            return NGX_CONF_ERROR;
        }

        n = ngx_atoi(value[2].data + 5, value[2].len - 5);

        if (n < 1 || n > NGX_HTTP_FLOWSCALE_MAX_POOL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flowscale_database: \"%V\" must be 1 to %d "
                               "connections per worker", &value[2],
                               NGX_HTTP_FLOWSCALE_MAX_POOL);
            return NGX_CONF_ERROR;
        }

        db->pool_size = n;
    }

    if (ngx_http_flowscale_check_conninfo(cf, &db->conninfo) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    db->origin = ngx_http_flowscale_origin(cf);
    if (db->origin == NULL) {
        return NGX_CONF_ERROR;
    }

    fmcf->db = db;

    return NGX_CONF_OK;
}


/*
 * libpq would look a "host" name up with a blocking getaddrinfo(), which
 * must never happen in a worker: a host must come with "hostaddr", or be
 * an address or a unix socket directory.
 */

static ngx_int_t
ngx_http_flowscale_check_conninfo(ngx_conf_t *cf, ngx_str_t *conninfo)
{
    char              *errmsg;
    size_t             len;
    u_char            *host;
    ngx_int_t          rc;
    ngx_addr_t         addr;
    PQconninfoOption  *opts, *o;

    errmsg = NULL;
    opts = PQconninfoParse((char *) conninfo->data, &errmsg);

    if (opts == NULL) {
        len = errmsg ? ngx_strlen(errmsg) : 0;

        /* libpq ends its messages with a newline */
        while (len && (errmsg[len - 1] == '\n' || errmsg[len - 1] == ' ')) {
            errmsg[--len] = '\0';
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_database: invalid connection string "
                           "\"%V\": %s", conninfo,
                           errmsg ? errmsg : "out of memory");
        PQfreemem(errmsg);
        return NGX_ERROR;
    }

    host = NULL;
    rc = NGX_OK;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            host = NULL;
            break;
        }

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = (u_char *) o->val;
        }
    }

    if (host && host[0] != '/' && host[0] != '@'
        && ngx_parse_addr(cf->pool, &addr, host, ngx_strlen(host))
           != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_database: host=%s would be looked up "
                           "with a blocking DNS query in every worker; give "
                           "its address with hostaddr=", host);
        rc = NGX_ERROR;
    }

    PQconninfoFree(opts);

    return rc;
}



ngx_int_t
ngx_http_flowscale_pg_init_process(ngx_cycle_t *cycle)
{
    ngx_http_flowscale_pg_pool_t    *pool = &ngx_http_flowscale_pg_pool;
    ngx_http_flowscale_main_conf_t  *fmcf;

    fmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_flowscale_module);

    ngx_memzero(pool, sizeof(ngx_http_flowscale_pg_pool_t));
    ngx_queue_init(&pool->waiting);
    pool->log = cycle->log;

    if (fmcf == NULL || fmcf->db == NULL) {
        return NGX_OK;
    }

    ngx_http_flowscale_pg_kick.handler = ngx_http_flowscale_pg_kicked;
    ngx_http_flowscale_pg_kick.data = &ngx_http_flowscale_pg_dummy;
    ngx_http_flowscale_pg_kick.log = cycle->log;

    pool->conninfo = (char *) fmcf->db->conninfo.data;
    pool->nconns = fmcf->db->pool_size;
    pool->conns = ngx_pcalloc(cycle->pool, pool->nconns
                              * sizeof(ngx_http_flowscale_pg_conn_t));

    return pool->conns ? NGX_OK : NGX_ERROR;
}


void
ngx_http_flowscale_pg_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i;
    ngx_http_flowscale_pg_pool_t  *pool = &ngx_http_flowscale_pg_pool;

    for (i = 0; i < pool->nconns; i++) {
        ngx_http_flowscale_pg_fail(&pool->conns[i], "nginx is exiting");
    }
}


/* connections that are up or on their way: 0 means the database is down */

ngx_uint_t
ngx_http_flowscale_pg_available(void)
{
    ngx_uint_t                     i, n;
    ngx_http_flowscale_pg_pool_t  *pool = &ngx_http_flowscale_pg_pool;

    n = 0;

    for (i = 0; i < pool->nconns; i++) {
        n += (pool->conns[i].state != NGX_HTTP_FLOWSCALE_PG_CLOSED);
    }

    return n;
}


ngx_http_flowscale_pg_query_t *
ngx_http_flowscale_pg_query(const char *sql, int nparams,
    const char *const *values, const int *lengths,
    ngx_http_flowscale_pg_done_pt done, void *data, ngx_log_t *log)
{
    int                             i, len;
    ngx_pool_t                     *p;
    ngx_http_flowscale_pg_query_t  *q;
    ngx_http_flowscale_pg_pool_t   *pool = &ngx_http_flowscale_pg_pool;

    if (pool->nconns == 0
        || pool->nwaiting >= NGX_HTTP_FLOWSCALE_MAX_WAITING)
    {
        return NULL;
    }

    /*
     * Not the caller's log: a request's log lives in its connection, which
     * may be gone when the result (or a canceled query's) is read and this
     * pool destroyed.
     */
    p = ngx_create_pool(512, ngx_cycle->log);
    if (p == NULL) {
        return NULL;
    }

    q = ngx_pcalloc(p, sizeof(ngx_http_flowscale_pg_query_t));
    if (q == NULL) {
        goto failed;
    }

    q->pool = p;
    q->done = done;
    q->data = data;
    q->nparams = nparams;

    len = ngx_strlen(sql) + 1;
    q->sql = ngx_pnalloc(p, len);
    q->values = ngx_pcalloc(p, (nparams + 1) * sizeof(char *));
    q->lengths = ngx_pcalloc(p, (nparams + 1) * sizeof(int));

    if (q->sql == NULL || q->values == NULL || q->lengths == NULL) {
        goto failed;
    }

    ngx_memcpy(q->sql, sql, len);

    for (i = 0; i < nparams; i++) {
        if (values[i] == NULL) {
            continue;                           /* SQL NULL */
        }

        len = lengths ? lengths[i] : (int) ngx_strlen(values[i]);

        q->values[i] = ngx_pnalloc(p, len + 1);
        if (q->values[i] == NULL) {
            goto failed;
        }

        ngx_memcpy(q->values[i], values[i], len);
        q->values[i][len] = '\0';
        q->lengths[i] = len;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0, "flowscale pg query: %s",
                   q->sql);

    ngx_queue_insert_tail(&pool->waiting, &q->queue);
    pool->nwaiting++;

    if (!ngx_http_flowscale_pg_kick.posted) {
        ngx_post_event(&ngx_http_flowscale_pg_kick, &ngx_posted_events);
    }

    return q;

failed:

    ngx_destroy_pool(p);
    return NULL;
}


/* another handler takes the result: its first owner is going away */

void
ngx_http_flowscale_pg_rebind(ngx_http_flowscale_pg_query_t *q,
    ngx_http_flowscale_pg_done_pt done, void *data)
{
    q->done = done;
    q->data = data;
}


void
ngx_http_flowscale_pg_cancel(ngx_http_flowscale_pg_query_t *q)
{
    ngx_http_flowscale_pg_pool_t  *pool = &ngx_http_flowscale_pg_pool;

    if (q->queue.next != NULL) {
        /* still waiting for a connection: forget it now */
        ngx_queue_remove(&q->queue);
        pool->nwaiting--;
        ngx_destroy_pool(q->pool);
        return;
    }

    /* on a connection: the result is read and dropped */
    q->canceled = 1;
}


/* the queries queued since the last turn of the event loop */

static void
ngx_http_flowscale_pg_kicked(ngx_event_t *ev)
{
    ngx_uint_t                     n;
    ngx_queue_t                   *qn;
    ngx_http_flowscale_pg_pool_t  *pool = &ngx_http_flowscale_pg_pool;

    /* as many starts as queries, each one taking a connection or not */
    for (n = pool->nwaiting; n && !ngx_queue_empty(&pool->waiting); n--) {

        if (ngx_http_flowscale_pg_start() == NGX_OK) {
            continue;
        }

        /* no connection can be started: the database is out of reach */
        while (!ngx_queue_empty(&pool->waiting)) {
            qn = ngx_queue_head(&pool->waiting);
            ngx_queue_remove(qn);
            qn->next = NULL;
            pool->nwaiting--;

            ngx_http_flowscale_pg_complete(
                ngx_queue_data(qn, ngx_http_flowscale_pg_query_t, queue),
                NULL, "the database is unavailable");
        }

        return;
    }
}


/*
 * Gives the first waiting query an idle connection, or opens one; else it
 * waits its turn.  NGX_DECLINED: no connection can even be started.
 */

static ngx_int_t
ngx_http_flowscale_pg_start(void)
{
    ngx_uint_t                     i;
    ngx_http_flowscale_pg_conn_t  *pc, *closed;
    ngx_http_flowscale_pg_pool_t  *pool = &ngx_http_flowscale_pg_pool;

    closed = NULL;

    for (i = 0; i < pool->nconns; i++) {
        pc = &pool->conns[i];

        if (pc->state == NGX_HTTP_FLOWSCALE_PG_IDLE) {
            ngx_http_flowscale_pg_next(pc);
            return NGX_OK;
        }

        if (pc->state == NGX_HTTP_FLOWSCALE_PG_CLOSED && closed == NULL) {
            closed = pc;
        }
    }

    if (closed == NULL) {
        return NGX_OK;
    }

    if (ngx_http_flowscale_pg_connect(closed) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "flowscale: cannot start a PostgreSQL connection: %s",
                      closed->pg ? PQerrorMessage(closed->pg) : "no memory");
        ngx_http_flowscale_pg_close(closed);

        return ngx_http_flowscale_pg_available() ? NGX_OK : NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_pg_connect(ngx_http_flowscale_pg_conn_t *pc)
{
    ngx_http_flowscale_pg_pool_t  *pool = &ngx_http_flowscale_pg_pool;

    pc->pg = PQconnectStart(pool->conninfo);

    if (pc->pg == NULL || PQstatus(pc->pg) == CONNECTION_BAD) {
        return NGX_ERROR;
    }

    if (PQsetnonblocking(pc->pg, 1) != 0) {
        return NGX_ERROR;
    }

    pc->state = NGX_HTTP_FLOWSCALE_PG_CONNECTING;

    if (ngx_http_flowscale_pg_wrap(pc) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_add_timer(pc->c->read, NGX_HTTP_FLOWSCALE_PG_CONNECT_TIMEOUT);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "flowscale pg connecting, fd:%d", pc->c->fd);

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_pg_wrap(ngx_http_flowscale_pg_conn_t *pc)
{
    return ngx_http_flowscale_pg_watch(pc->pg, &pc->c, pc,
                                       ngx_http_flowscale_pg_handler,
                                       ngx_http_flowscale_pg_pool.log);
}


/*
 * libpq owns the socket; nginx only watches it.  Shared with the LISTEN
 * connection (ngx_http_flowscale_listen.c).
 */

ngx_int_t
ngx_http_flowscale_pg_watch(PGconn *pg, ngx_connection_t **cp, void *data,
    ngx_event_handler_pt handler, ngx_log_t *log)
{
    int                fd;
    ngx_connection_t  *c;

    fd = PQsocket(pg);
    if (fd == -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = data;
    c->read->handler = handler;
    c->write->handler = handler;
    c->read->log = log;
    c->write->log = log;

    *cp = c;

    /*
     * Level-triggered: libpq reads and writes on its own terms, so a
     * readiness it left unused must be reported again.  Writability is
     * watched only while libpq has something to send.
     */
    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_http_flowscale_pg_unwatch(cp);
        return NGX_ERROR;
    }

    return ngx_http_flowscale_pg_watch_write(c, 1);
}


ngx_int_t
ngx_http_flowscale_pg_watch_write(ngx_connection_t *c, ngx_uint_t on)
{
    ngx_event_t  *wev;

    wev = c->write;

    if (on && !wev->active) {
        return ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }

    if (!on && wev->active) {
        return ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }

    return NGX_OK;
}


void
ngx_http_flowscale_pg_unwatch(ngx_connection_t **cp)
{
    ngx_connection_t  *c;

    c = *cp;
    if (c == NULL) {
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* NGX_CLOSE_EVENT: libpq closes the descriptor itself */
    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
    *cp = NULL;
}


static void
ngx_http_flowscale_pg_handler(ngx_event_t *ev)
{
    ngx_connection_t              *c;
    ngx_http_flowscale_pg_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0, "flowscale: PostgreSQL %s "
                      "timed out",
                      pc->state == NGX_HTTP_FLOWSCALE_PG_CONNECTING
                      ? "connect" : "query");
        ngx_http_flowscale_pg_fail(pc, "the database timed out");
        return;
    }

    switch (pc->state) {

    case NGX_HTTP_FLOWSCALE_PG_CONNECTING:
        ngx_http_flowscale_pg_connect_poll(pc);
        return;

    case NGX_HTTP_FLOWSCALE_PG_BUSY:
        if (ev->write) {
            ngx_http_flowscale_pg_flush(pc);

        } else {
            ngx_http_flowscale_pg_read(pc);
        }
        return;

    case NGX_HTTP_FLOWSCALE_PG_IDLE:
        /* an idle connection that reads something was closed or told us */
        if (!ev->write
            && (!PQconsumeInput(pc->pg) || PQstatus(pc->pg) == CONNECTION_BAD))
        {
            ngx_log_error(NGX_LOG_WARN, ev->log, 0, "flowscale: PostgreSQL "
                          "connection lost: %s", PQerrorMessage(pc->pg));
            ngx_http_flowscale_pg_fail(pc, "the database connection was "
                                       "lost");
        }
        return;

    default:
        return;
    }
}


static void
ngx_http_flowscale_pg_connect_poll(ngx_http_flowscale_pg_conn_t *pc)
{
    PostgresPollingStatusType  rc;

    rc = PQconnectPoll(pc->pg);

    /* libpq may move to another socket while it tries addresses */
    if (PQsocket(pc->pg) != pc->c->fd) {
        ngx_http_flowscale_pg_unwatch(&pc->c);

        if (ngx_http_flowscale_pg_wrap(pc) != NGX_OK) {
            ngx_http_flowscale_pg_fail(pc, "cannot connect");
            return;
        }

        ngx_add_timer(pc->c->read, NGX_HTTP_FLOWSCALE_PG_CONNECT_TIMEOUT);
    }

    if (ngx_http_flowscale_pg_watch_write(pc->c, rc == PGRES_POLLING_WRITING)
        != NGX_OK)
    {
        ngx_http_flowscale_pg_fail(pc, "cannot connect");
        return;
    }

    switch (rc) {

    case PGRES_POLLING_OK:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pc->c->log, 0,
                       "flowscale pg connected");

        if (pc->c->read->timer_set) {
            ngx_del_timer(pc->c->read);
        }

        pc->state = NGX_HTTP_FLOWSCALE_PG_IDLE;
        ngx_http_flowscale_pg_next(pc);
        return;

    case PGRES_POLLING_FAILED:
        ngx_log_error(NGX_LOG_ERR, pc->c->log, 0,
                      "flowscale: cannot connect to PostgreSQL: %s",
                      PQerrorMessage(pc->pg));
        ngx_http_flowscale_pg_fail(pc, "the database is unavailable");
        return;

    default:
        /* PGRES_POLLING_READING or _WRITING: wait for the socket */
        return;
    }
}


static void
ngx_http_flowscale_pg_next(ngx_http_flowscale_pg_conn_t *pc)
{
    ngx_queue_t                    *qn;
    ngx_http_flowscale_pg_pool_t   *pool = &ngx_http_flowscale_pg_pool;

    if (ngx_queue_empty(&pool->waiting)) {
        return;
    }

    qn = ngx_queue_head(&pool->waiting);
    ngx_queue_remove(qn);
    qn->next = NULL;
    pool->nwaiting--;

    ngx_http_flowscale_pg_send(pc,
        ngx_queue_data(qn, ngx_http_flowscale_pg_query_t, queue));
}


static void
ngx_http_flowscale_pg_send(ngx_http_flowscale_pg_conn_t *pc,
    ngx_http_flowscale_pg_query_t *q)
{
    pc->query = q;
    pc->state = NGX_HTTP_FLOWSCALE_PG_BUSY;

    if (!PQsendQueryParams(pc->pg, q->sql, q->nparams, NULL,
                           (const char *const *) q->values, q->lengths, NULL,
                           0))
    {
        ngx_log_error(NGX_LOG_ERR, pc->c->log, 0,
                      "flowscale: PostgreSQL send failed: %s",
                      PQerrorMessage(pc->pg));
        ngx_http_flowscale_pg_fail(pc, "the database connection was lost");
        return;
    }

    ngx_add_timer(pc->c->read, NGX_HTTP_FLOWSCALE_PG_QUERY_TIMEOUT);

    ngx_http_flowscale_pg_flush(pc);
}


static void
ngx_http_flowscale_pg_flush(ngx_http_flowscale_pg_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->pg);

    if (rc == -1) {
        ngx_http_flowscale_pg_fail(pc, "the database connection was lost");
        return;
    }

    /* rc == 1: more to send when the socket is writable again */

    if (ngx_http_flowscale_pg_watch_write(pc->c, rc == 1) != NGX_OK) {
        ngx_http_flowscale_pg_fail(pc, "the database connection was lost");
        return;
    }

    if (rc == 0) {
        /* the reply may already be there: edge-triggered events */
        ngx_http_flowscale_pg_read(pc);
    }
}


static void
ngx_http_flowscale_pg_read(ngx_http_flowscale_pg_conn_t *pc)
{
    PGresult  *res;

    if (!PQconsumeInput(pc->pg)) {
        ngx_log_error(NGX_LOG_ERR, pc->c->log, 0,
                      "flowscale: PostgreSQL read failed: %s",
                      PQerrorMessage(pc->pg));
        ngx_http_flowscale_pg_fail(pc, "the database connection was lost");
        return;
    }

    while (!PQisBusy(pc->pg)) {
        res = PQgetResult(pc->pg);

        if (res == NULL) {
            ngx_http_flowscale_pg_finish(pc, NULL);
            return;
        }

        /* keep the first result; an error result replaces a good one */
        if (pc->result == NULL
            || PQresultStatus(res) == PGRES_FATAL_ERROR)
        {
            PQclear(pc->result);
            pc->result = res;

        } else {
            PQclear(res);
        }
    }
}


static void
ngx_http_flowscale_pg_finish(ngx_http_flowscale_pg_conn_t *pc,
    const char *error)
{
    PGresult                       *res;
    ngx_http_flowscale_pg_query_t  *q;

    q = pc->query;
    res = pc->result;

    pc->query = NULL;
    pc->result = NULL;

    if (pc->c && pc->c->read->timer_set) {
        ngx_del_timer(pc->c->read);
    }

    if (pc->state == NGX_HTTP_FLOWSCALE_PG_BUSY) {
        pc->state = NGX_HTTP_FLOWSCALE_PG_IDLE;
    }

    if (q) {
        ngx_http_flowscale_pg_complete(q, error ? NULL : res, error);
    }

    PQclear(res);

    if (pc->state == NGX_HTTP_FLOWSCALE_PG_IDLE) {
        ngx_http_flowscale_pg_next(pc);
    }
}


static void
ngx_http_flowscale_pg_complete(ngx_http_flowscale_pg_query_t *q,
    PGresult *res, const char *error)
{
    ngx_http_flowscale_stats_db_result(res);    /* issue 7: db errors */

    if (!q->canceled) {
        q->done(q->data, res, error);
    }

    ngx_destroy_pool(q->pool);
}


/*
 * A connection failed: its query fails, and while no connection is left
 * (the database is down) every waiting query fails at once, so callers can
 * answer 503 instead of hanging.
 */

static void
ngx_http_flowscale_pg_fail(ngx_http_flowscale_pg_conn_t *pc,
    const char *error)
{
    ngx_queue_t                    *qn;
    ngx_http_flowscale_pg_query_t  *q;
    ngx_http_flowscale_pg_pool_t   *pool = &ngx_http_flowscale_pg_pool;

    q = pc->query;
    pc->query = NULL;

    PQclear(pc->result);
    pc->result = NULL;

    ngx_http_flowscale_pg_close(pc);

    if (q) {
        ngx_http_flowscale_pg_complete(q, NULL, error);
    }

    if (ngx_http_flowscale_pg_available() > 0) {
        return;
    }

    while (!ngx_queue_empty(&pool->waiting)) {
        qn = ngx_queue_head(&pool->waiting);
        ngx_queue_remove(qn);
        qn->next = NULL;
        pool->nwaiting--;

        ngx_http_flowscale_pg_complete(
            ngx_queue_data(qn, ngx_http_flowscale_pg_query_t, queue),
            NULL, error);
    }
}


static void
ngx_http_flowscale_pg_close(ngx_http_flowscale_pg_conn_t *pc)
{
    ngx_http_flowscale_pg_unwatch(&pc->c);

    if (pc->pg) {
        PQfinish(pc->pg);
        pc->pg = NULL;
    }

    pc->state = NGX_HTTP_FLOWSCALE_PG_CLOSED;
}
