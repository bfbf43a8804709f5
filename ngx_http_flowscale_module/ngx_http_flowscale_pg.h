
/*
 * FlowScale for nginx: a pool of non-blocking PostgreSQL connections per
 * worker, driven by nginx's event loop.
 */


#ifndef _NGX_HTTP_FLOWSCALE_PG_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <libpq-fe.h>


typedef struct ngx_http_flowscale_pg_query_s  ngx_http_flowscale_pg_query_t;

/*
 * res is the query's first result (PGRES_COMMAND_OK, PGRES_TUPLES_OK or an
 * error result), or NULL when the database could not be reached; error is
 * then a short reason.  res is cleared after the handler returns.
 */
typedef void (*ngx_http_flowscale_pg_done_pt)(void *data, PGresult *res,
    const char *error);


ngx_int_t ngx_http_flowscale_pg_init_process(ngx_cycle_t *cycle);
void ngx_http_flowscale_pg_exit_process(ngx_cycle_t *cycle);

/*
 * Runs one parameterised statement (text parameters; lengths and formats
 * may be NULL).  Parameters are copied.  Returns NULL when the query cannot
 * even be queued; otherwise done is called exactly once, later, unless the
 * query is canceled first.
 */
ngx_http_flowscale_pg_query_t *ngx_http_flowscale_pg_query(const char *sql,
    int nparams, const char *const *values, const int *lengths,
    ngx_http_flowscale_pg_done_pt done, void *data, ngx_log_t *log);

void ngx_http_flowscale_pg_rebind(ngx_http_flowscale_pg_query_t *q,
    ngx_http_flowscale_pg_done_pt done, void *data);

/* done will not be called; the statement itself still completes */
void ngx_http_flowscale_pg_cancel(ngx_http_flowscale_pg_query_t *q);

ngx_uint_t ngx_http_flowscale_pg_available(void);

/* a libpq connection's socket in the event loop (pg.c, listen.c) */
ngx_int_t ngx_http_flowscale_pg_watch(PGconn *pg, ngx_connection_t **cp,
    void *data, ngx_event_handler_pt handler, ngx_log_t *log);
ngx_int_t ngx_http_flowscale_pg_watch_write(ngx_connection_t *c,
    ngx_uint_t on);
void ngx_http_flowscale_pg_unwatch(ngx_connection_t **cp);


#endif /* _NGX_HTTP_FLOWSCALE_PG_H_INCLUDED_ */
