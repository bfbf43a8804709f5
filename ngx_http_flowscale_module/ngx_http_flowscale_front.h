
/*
 * FlowScale for nginx: this nginx among several that share one PostgreSQL
 * and one pool of backends.
 */


#ifndef _NGX_HTTP_FLOWSCALE_FRONT_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_FRONT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_FLOWSCALE_FRONT_ID_LEN  36


/* a fresh id, NUL-terminated, when the zone is made (not at reloads) */
void ngx_http_flowscale_front_new_id(u_char *id);

/* this front's id as accept_run() and claim_run() take it */
const char *ngx_http_flowscale_front_id(void);

/* how many fronts held a lease at the last beat: 1 when alone */
ngx_uint_t ngx_http_flowscale_fronts(void);

/* the leader's timer: lease, take-over, runs of other fronts */
void ngx_http_flowscale_front_tick(void);


#endif /* _NGX_HTTP_FLOWSCALE_FRONT_H_INCLUDED_ */
