
/*
 * FlowScale for nginx: this nginx among several that share one PostgreSQL
 * and one pool of backends (design.md section 6, last point).
 *
 * Every nginx, a "front", has an id made when its zone is created (so it
 * survives reloads) and a lease in flowscale.fronts that its leader renews
 * every second.  A run belongs to the front that accepted it, and only
 * that front hands it to a backend.  When a front's lease runs out (it was
 * killed, its machine died), the next front to renew its own takes the
 * dead front's unfinished runs in one statement, and recover.c reads them
 * into this zone: queued ones wait here, those on backends are followed
 * from where they are.  At a start, a front also takes back the runs of
 * its own earlier life at once (same host and configuration file).
 *
 * While several fronts hold leases, the runs other fronts put on each
 * backend are counted here every second, and claim_run() checks the depth
 * in PostgreSQL before a run goes out, so flowscale_backend_depth holds
 * across fronts.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_front.h"


#define NGX_HTTP_FLOWSCALE_BEAT  1000


static void ngx_http_flowscale_front_beaten(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_front_taken(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_front_counted(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_front_failed(const char *what, PGresult *res,
    const char *error);
static ngx_int_t ngx_http_flowscale_front_query(const char *sql, int n,
    const char **params, ngx_http_flowscale_pg_done_pt done);
static const char *ngx_http_flowscale_front_name(void);


/* per process: the leader's one chain of queries at a time */
static ngx_uint_t  ngx_http_flowscale_front_busy;
static ngx_msec_t  ngx_http_flowscale_front_next;
static ngx_uint_t  ngx_http_flowscale_front_failures;


void
ngx_http_flowscale_front_new_id(u_char *id)
{
    u_char      b[16];
    ngx_uint_t  i;

    if (RAND_bytes(b, sizeof(b)) != 1) {
        for (i = 0; i < sizeof(b); i++) {
            b[i] = (u_char) (ngx_random() ^ ngx_pid ^ ngx_time());
        }
    }

    b[6] = (b[6] & 0x0f) | 0x40;                /* version 4 */
    b[8] = (b[8] & 0x3f) | 0x80;                /* RFC 9562 variant */

    ngx_sprintf(id, "%*xs-%*xs-%*xs-%*xs-%*xs%Z", (size_t) 4, b,
                (size_t) 2, b + 4, (size_t) 2, b + 6, (size_t) 2, b + 8,
                (size_t) 6, b + 10);
}


const char *
ngx_http_flowscale_front_id(void)
{
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    /* written once, before any worker starts; no zone: no deployment */
    return z ? (const char *) z->sh->front_id : "";
}


/*
 * Read without the zone's lock: every accepted run asks, the value is one
 * word written once a second, and a stale answer only delays the switch
 * to (or from) claiming in PostgreSQL by a beat.
 */

ngx_uint_t
ngx_http_flowscale_fronts(void)
{
    ngx_uint_t                  n;
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    n = z ? *(volatile ngx_uint_t *) &z->sh->fronts : 1;

    return n > 1 ? n : 1;
}


/* every leader tick; a beat each second, the next only once one ended */

void
ngx_http_flowscale_front_tick(void)
{
    u_char                           lease[NGX_INT_T_LEN + 1];
    const char                      *params[3];
    ngx_http_flowscale_main_conf_t  *fmcf;

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);

    if (fmcf == NULL || fmcf->db == NULL || ngx_http_flowscale_front_busy
        || (ngx_msec_int_t) (ngx_current_msec
                             - ngx_http_flowscale_front_next) < 0)
    {
        return;
    }

    ngx_http_flowscale_front_next = ngx_current_msec
                                    + NGX_HTTP_FLOWSCALE_BEAT;

    ngx_sprintf(lease, "%M%Z", fmcf->lease);

    params[0] = ngx_http_flowscale_front_id();
    params[1] = ngx_http_flowscale_front_name();
    params[2] = (char *) lease;

    (void) ngx_http_flowscale_front_query(
        "SELECT known, fronts FROM flowscale.front_beat($1, $2, $3)",
        3, params, ngx_http_flowscale_front_beaten);
}


static void
ngx_http_flowscale_front_beaten(void *data, PGresult *res, const char *error)
{
    u_char                           lease[NGX_INT_T_LEN + 1];
    ngx_int_t                        fronts;
    ngx_uint_t                       known, registered, restart;
    const char                      *params[4];
    ngx_http_flowscale_zone_t       *z;
    ngx_http_flowscale_main_conf_t  *fmcf;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        ngx_http_flowscale_front_failed("renew this front's lease", res,
                                        error);
        return;
    }

    known = (PQgetvalue(res, 0, 0)[0] == 't');
    fronts = ngx_atoi((u_char *) PQgetvalue(res, 0, 1),
                      PQgetlength(res, 0, 1));

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    registered = z->sh->front_registered;
    z->sh->front_registered = 1;
    z->sh->fronts = fronts > 0 ? (ngx_uint_t) fronts : 1;
    restart = !z->sh->front_ready;

    ngx_http_flowscale_runs_unlock(z);

    if (registered && !known) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "flowscale: this nginx could not renew its lease in "
                      "time, and other nginx fronts took over its unfinished "
                      "runs; it goes on with new runs");
    }

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    ngx_sprintf(lease, "%M%Z", fmcf->lease);

    params[0] = ngx_http_flowscale_front_id();
    params[1] = ngx_http_flowscale_front_name();
    params[2] = (char *) lease;
    params[3] = restart ? "t" : "f";

    (void) ngx_http_flowscale_front_query(
        "SELECT flowscale.take_over_runs($1, $2, $3, $4)",
        4, params, ngx_http_flowscale_front_taken);
}


static void
ngx_http_flowscale_front_taken(void *data, PGresult *res, const char *error)
{
    ngx_int_t                   n;
    ngx_uint_t                  i, fronts;
    const char                 *params[1];
    ngx_http_flowscale_zone_t  *z;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        ngx_http_flowscale_front_failed("take over runs of other fronts",
                                        res, error);
        return;
    }

    n = ngx_atoi((u_char *) PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0));

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    if (n > 0 || !z->sh->front_ready) {
        /* recover.c reads this front's unfinished runs at the next tick */
        z->sh->recovered = 0;
    }

    z->sh->front_ready = 1;
    fronts = z->sh->fronts;

    if (fronts <= 1) {
        for (i = 0; i < z->sh->nbackends; i++) {
            z->sh->backends[i].foreign = 0;
        }
    }

    ngx_http_flowscale_runs_unlock(z);

    if (n > 0) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "flowscale: took over %i unfinished runs of nginx "
                      "fronts that are gone", n);
    }

    ngx_http_flowscale_front_failures = 0;

    if (fronts <= 1) {
        ngx_http_flowscale_front_busy = 0;
        return;
    }

    params[0] = ngx_http_flowscale_front_id();

    (void) ngx_http_flowscale_front_query(
        "SELECT backend, runs FROM flowscale.foreign_runs($1)",
        1, params, ngx_http_flowscale_front_counted);
}


/* the runs other fronts have on each backend */

static void
ngx_http_flowscale_front_counted(void *data, PGresult *res,
    const char *error)
{
    int                                 row;
    ngx_int_t                           n;
    ngx_str_t                           name;
    ngx_uint_t                          i;
    ngx_http_flowscale_zone_t          *z;
    ngx_http_flowscale_backend_slot_t  *slot;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_http_flowscale_front_failed("count the runs of other fronts",
                                        res, error);
        return;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    for (i = 0; i < z->sh->nbackends; i++) {
        z->sh->backends[i].foreign = 0;
    }

    for (row = 0; row < PQntuples(res); row++) {
        name.data = (u_char *) PQgetvalue(res, row, 0);
        name.len = PQgetlength(res, row, 0);

        slot = ngx_http_flowscale_runs_backend(z, &name);
        n = ngx_atoi((u_char *) PQgetvalue(res, row, 1),
                     PQgetlength(res, row, 1));

        if (slot && n > 0) {
            slot->foreign = n;
        }
    }

    ngx_http_flowscale_runs_unlock(z);

    ngx_http_flowscale_front_busy = 0;
}


static void
ngx_http_flowscale_front_failed(const char *what, PGresult *res,
    const char *error)
{
    ngx_uint_t  level;

    /* once per outage */
    level = ngx_http_flowscale_front_failures ? NGX_LOG_INFO : NGX_LOG_WARN;

    ngx_log_error(level, ngx_cycle->log, 0,
                  "flowscale: cannot %s, will retry: %s",
                  what, res ? PQresultErrorMessage(res) : error);

    ngx_http_flowscale_front_failures++;
    ngx_http_flowscale_front_busy = 0;
}


static ngx_int_t
ngx_http_flowscale_front_query(const char *sql, int n, const char **params,
    ngx_http_flowscale_pg_done_pt done)
{
    ngx_http_flowscale_front_busy = 1;

    if (ngx_http_flowscale_pg_query(sql, n, params, NULL, done, NULL,
                                    ngx_cycle->log)
        == NULL)
    {
        done(NULL, NULL, "no database connection");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* host and configuration file: the same front after a restart */

static const char *
ngx_http_flowscale_front_name(void)
{
    static u_char  name[512];

    if (name[0] == '\0') {
        ngx_snprintf(name, sizeof(name) - 1, "%V:%V%Z",
                     &ngx_cycle->hostname, &ngx_cycle->conf_file);
    }

    return (const char *) name;
}
