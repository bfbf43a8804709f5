
/*
 * FlowScale for nginx: the PostgreSQL connection settings
 * (flowscale_database).  The connection string is checked when the
 * configuration is loaded; nothing connects at that time, and workers will
 * only ever connect without blocking (hostaddr, never a host name to look
 * up).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>

#include "ngx_http_flowscale_module.h"


#define NGX_HTTP_FLOWSCALE_MAX_POOL  64


static ngx_int_t ngx_http_flowscale_check_conninfo(ngx_conf_t *cf,
    ngx_str_t *conninfo);


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
