# Issue 6: keys are served in turn within a deployment's gateway queue, so
# one key's burst cannot starve another; queue positions follow the turns.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use FlowScale::Fixture qw(postgres psql simulator sim_faults sim_log);
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $WF = "$FlowScale::Nginx::Root/conf/workflows";

postgres();
simulator('sim1', step_time => 0.02);

psql("select flowscale.create_project('fair')");
my %key = map { $_ => scalar psql("select flowscale.create_api_key('fair', '$_')") }
          qw(burst other);

my $ng = FlowScale::Nginx->new(http => <<"HTTP");
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=4;
    flowscale_zone flowscale:16m;
    flowscale_health_interval 500ms;

    upstream comfyui {
        server 127.0.0.1:\$TEST_NGINX_SIM1_PORT;
    }

    server {
        listen 127.0.0.1:\@PORT\@;
        flowscale_project fair;
        flowscale_backend_depth 1;

        location /v1/fair {
            flowscale_deployment fair;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt 6.text required;
            flowscale_output     result 9;
            flowscale_backend    comfyui;
        }
    }
HTTP

# wait until the backend is known to be capable
my $t0 = time;
sleep 0.1 while time - $t0 < 10
                && ($ng->get('/v1/fair')->{json}{state} // '') ne 'ready';
is $ng->get('/v1/fair')->{json}{state}, 'ready', 'deployment ready';

sim_faults('sim1', { slow => 1 });

sub post {
    my ($who, $prompt) = @_;
    my $res = $ng->post_json('/v1/fair', { inputs => { prompt => $prompt } },
                             headers => { 'X-API-Key' => $key{$who} });
    is $res->{status}, 202, "$prompt accepted";
    return $res->{json};
}

# one key's burst: the first run takes the backend, four wait
my @burst = map { post('burst', "b$_") } 1 .. 5;
my $other = post('other', 'o1');

is $burst[1]{queue_position}, 1, 'the burst\'s first waiting run is next';
is $burst[4]{queue_position}, 4, '... its last is fourth';
is $other->{queue_position}, 2, 'the other key\'s run is second, not sixth';

my $b4 = $ng->get("/v1/fair/runs/$burst[4]{id}",
                  headers => { 'X-API-Key' => $key{burst} })->{json};
is $b4->{queue_position}, 5, 'the burst\'s last run now waits behind it';

sim_faults('sim1', { slow => 0 });

# every run ends; the order the backend got them shows the turns
$t0 = time;
my %done;
while (time - $t0 < 30 && keys(%done) < 6) {
    for my $r (@burst, $other) {
        my $who = $r == $other ? 'other' : 'burst';
        my $got = $ng->get("/v1/fair/runs/$r->{id}",
                           headers => { 'X-API-Key' => $key{$who} })->{json};
        $done{$r->{id}} = 1 if ($got->{status} // '') eq 'succeeded';
    }
    sleep 0.2;
}
is scalar(keys %done), 6, 'all six runs succeeded';

my @order = map { $_->{prompt_id} }
            grep { $_->{kind} eq 'prompt' && ($_->{status} // 200) == 200 }
            @{ sim_log('sim1') };
my %rank;
@rank{@order} = 0 .. $#order;
ok defined $rank{$other->{id}} && defined $rank{$burst[2]{id}}
   && $rank{$other->{id}} < $rank{$burst[2]{id}},
   'the other key\'s run went before the burst\'s third'
   or diag explain \@order;

$ng->stop;
done_testing;
