
/*
 * FlowScale for nginx: webhook deliveries that a restart or a reload left
 * behind.  A pending retry waits on a worker's timer; a worker that exits
 * drops it, and PostgreSQL keeps the delivery "pending" with the time its
 * next attempt was due.  The leader of any nginx front looks every few
 * seconds for pending deliveries whose attempt is overdue by more than
 * any attempt can take (so no live worker is on them), claims a few (row
 * locks: each goes to one front) and delivers them again from where they
 * stopped, counting the attempts already made.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_dispatch.h"
#include "ngx_http_flowscale_webhook.h"


#define NGX_HTTP_FLOWSCALE_RESUME_EVERY   5000
#define NGX_HTTP_FLOWSCALE_RESUME_SLACK   5000   /* beyond the attempt */
#define NGX_HTTP_FLOWSCALE_RESUME_BATCH   "50"


static void ngx_http_flowscale_webhook_resumed(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_webhook_resume_one(PGresult *res, int row);
static ngx_msec_t ngx_http_flowscale_webhook_stale(void);


static ngx_uint_t  ngx_http_flowscale_resume_busy;
static ngx_msec_t  ngx_http_flowscale_resume_next;


void
ngx_http_flowscale_webhook_resume_tick(void)
{
    u_char                           stale[NGX_INT_T_LEN + 1];
    const char                      *params[1];
    ngx_http_flowscale_main_conf_t  *fmcf;

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);

    if (fmcf == NULL || fmcf->db == NULL || ngx_http_flowscale_resume_busy
        || (ngx_msec_int_t) (ngx_current_msec
                             - ngx_http_flowscale_resume_next) < 0)
    {
        return;
    }

    ngx_http_flowscale_resume_next = ngx_current_msec
                                     + NGX_HTTP_FLOWSCALE_RESUME_EVERY;

    ngx_sprintf(stale, "%M%Z", ngx_http_flowscale_webhook_stale());
    params[0] = (char *) stale;

    ngx_http_flowscale_resume_busy = 1;

    if (ngx_http_flowscale_pg_query(
            "SELECT * FROM flowscale.webhooks_left_behind($1, "
            NGX_HTTP_FLOWSCALE_RESUME_BATCH ")", 1, params, NULL,
            ngx_http_flowscale_webhook_resumed, NULL, ngx_cycle->log)
        == NULL)
    {
        ngx_http_flowscale_resume_busy = 0;
    }
}


static void
ngx_http_flowscale_webhook_resumed(void *data, PGresult *res,
    const char *error)
{
    int  row;

    ngx_http_flowscale_resume_busy = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "flowscale: cannot look for webhooks left behind, "
                      "will retry: %s",
                      res ? PQresultErrorMessage(res) : error);
        return;
    }

    for (row = 0; row < PQntuples(res); row++) {
        ngx_http_flowscale_webhook_resume_one(res, row);
    }
}


/* columns: those of ngx_http_flowscale_run_sql, then webhook, attempts */

#define NGX_HTTP_FLOWSCALE_RESUME_WEBHOOK   12
#define NGX_HTTP_FLOWSCALE_RESUME_ATTEMPTS  13


static void
ngx_http_flowscale_webhook_resume_one(PGresult *res, int row)
{
    ngx_int_t                       attempts;
    ngx_str_t                       id, project, url, body;
    ngx_pool_t                     *pool;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_run_view_t   v;

    ngx_http_flowscale_pg_view(res, row, &v);

    id.data = v.run.id;
    id.len = NGX_HTTP_FLOWSCALE_RUN_ID_LEN;

    flcf = ngx_http_flowscale_find_deployment(v.run.project,
                                              v.run.deployment);
    if (flcf == NULL) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "flowscale: webhook of run %V left behind, but this "
                      "configuration has no deployment \"%s\"", &id,
                      v.run.deployment);
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (ngx_http_flowscale_render_run(pool, flcf, &v, &body) == NGX_OK) {
        body.len--;                             /* its newline */

        project.data = v.run.project;
        project.len = ngx_strlen(v.run.project);
        url.data = (u_char *) PQgetvalue(res, row,
                                         NGX_HTTP_FLOWSCALE_RESUME_WEBHOOK);
        url.len = PQgetlength(res, row, NGX_HTTP_FLOWSCALE_RESUME_WEBHOOK);
        attempts = ngx_atoi((u_char *) PQgetvalue(res, row,
                                NGX_HTTP_FLOWSCALE_RESUME_ATTEMPTS),
                            PQgetlength(res, row,
                                NGX_HTTP_FLOWSCALE_RESUME_ATTEMPTS));

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "flowscale: webhook of run %V resumed after %i "
                      "attempts", &id, attempts);

        ngx_http_flowscale_webhook_deliver(flcf, &id, &project, &url, &body,
                                           attempts > 0 ? attempts : 0);
    }

    ngx_destroy_pool(pool);
}


/* overdue by more than the longest attempt: no live worker is on it */

static ngx_msec_t
ngx_http_flowscale_webhook_stale(void)
{
    ngx_uint_t                        i;
    ngx_msec_t                        longest;
    ngx_http_flowscale_loc_conf_t   **flcfp;
    ngx_http_flowscale_main_conf_t   *fmcf;

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    flcfp = fmcf->deployments.elts;
    longest = 0;

    for (i = 0; i < fmcf->deployments.nelts; i++) {
        longest = ngx_max(longest, flcfp[i]->webhook_timeout);
    }

    return longest + NGX_HTTP_FLOWSCALE_RESUME_SLACK;
}
