# The harness's own tests: the PostgreSQL fixture, used from a .t file.
use Test::Nginx::Socket 'no_plan';
use FlowScale::Fixture;

my $pg = FlowScale::Fixture::postgres();

is(scalar FlowScale::Fixture::psql("select count(*) from generate_series(1, 5)"),
   5, "psql through the fixture");
is_deeply([FlowScale::Fixture::psql("select 1, 'a'; select 2, 'b'")],
          ['1|a', '2|b'], "psql returns rows, columns joined by |");
is(scalar FlowScale::Fixture::psql("select current_user || ' ' || current_database()"),
   'flowscale flowscale', "connected as flowscale to flowscale");
like($ENV{TEST_NGINX_PG_DSN},
     qr/^hostaddr=127\.0\.0\.1 port=\d+ dbname=flowscale user=flowscale$/,
     "TEST_NGINX_PG_DSN");

if ($pg->{dir}) {
    FlowScale::Fixture::stop_postgres();
    ok(!eval { FlowScale::Fixture::psql("select 1"); 1 },
       "the database is down after stop_postgres()");
    FlowScale::Fixture::start_postgres();
    is(scalar FlowScale::Fixture::psql("select 1"), 1,
       "and up again after start_postgres()");
}

$ENV{TEST_NGINX_PG_ANSWER} = FlowScale::Fixture::psql("select 6 * 7");

run_tests();

__DATA__

=== TEST 1: values from the fixture's database and environment in the config
--- config
    location = /t {
        return 200 "answer=$TEST_NGINX_PG_ANSWER port=$TEST_NGINX_PG_PORT\n";
    }
--- request
GET /t
--- response_body
answer=42 port=$TEST_NGINX_PG_PORT
--- no_error_log
[error]



=== TEST 2: nginx reaches the database's TCP port (a stock proxy to it)
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_PG_PORT/;
        proxy_read_timeout 1s;
    }
--- request
GET /t
--- error_code_like: ^50[24]$
--- no_error_log
Connection refused
