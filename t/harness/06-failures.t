# The harness's own tests: a broken expectation must fail.  Runs a child
# test script (with the same Test::Nginx found on @INC) and reads its TAP.
use strict;
use warnings;
use File::Temp ();
use Test::More;

my $dir = File::Temp::tempdir('harness-fail-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $child = "$dir/child.t";
open my $out, '>', $child or die "$child: $!";
print $out <<'CHILD';
use Test::Nginx::Socket 'no_plan';
no_shuffle();
run_tests();
__DATA__

=== TEST 1: wrong body
--- config
    location = /t { return 200 "actual\n"; }
--- request
GET /t
--- response_body
expected



=== TEST 2: wrong status, missing header, present header
--- config
    location = /t { add_header X-Here yes; return 201 "x"; }
--- request
GET /t
--- response_headers
X-Missing: 1
!X-Here
--- error_code: 200



=== TEST 3: error_log pattern absent, no_error_log pattern present
--- config
    location = /t { return 200 "x"; }
--- request
GET /t
--- error_log
this text is never logged
--- no_error_log
http request line



=== TEST 4: must_die on a good configuration
--- config
    location = /t { return 200 "x"; }
--- must_die



=== TEST 5: the response takes longer than the timeout
--- config
    location = /t { limit_rate 1; return 200 "slow slow slow"; }
--- request
GET /t
--- timeout: 200ms
--- ignore_response



=== TEST 6: response_body_like does not match
--- config
    location = /t { return 200 "abc"; }
--- request
GET /t
--- response_body_like: ^xyz$
CHILD
close $out;

my @inc = map { "-I$_" } grep { !ref } @INC;
my $tap = `'$^X' @inc '$child' 2>&1`;

my %result;
for my $line (split /\n/, $tap) {
    if ($line =~ /^(not ok|ok) \d+ - \Q$child\E (TEST \d+: .*?)\s*$/) {
        $result{$2} = $1;
    } elsif ($line =~ /^not ok \d+ - ERROR: client socket timed out - \Q$child\E (TEST \d+: .*?)\s*$/) {
        $result{"$1 - timed out"} = 'not ok';
    }
}

my @expect = (
    ['TEST 1: wrong body - status code ok', 'ok'],
    ['TEST 1: wrong body - response_body - response is expected (repeated req 0, req 0)', 'not ok'],
    ['TEST 2: wrong status, missing header, present header - status code ok', 'not ok'],
    ['TEST 2: wrong status, missing header, present header - header X-Missing ok', 'not ok'],
    ['TEST 2: wrong status, missing header, present header - header X-Here not present in the raw headers', 'not ok'],
    ['TEST 3: error_log pattern absent, no_error_log pattern present - pattern "this text is never logged" should match a line in error.log (req 0)', 'not ok'],
    ['TEST 4: must_die on a good configuration - die as expected', 'not ok'],
    ['TEST 5: the response takes longer than the timeout - timed out', 'not ok'],
    ['TEST 6: response_body_like does not match - response_body_like - response is expected (abc)', 'not ok'],
);

for my $e (@expect) {
    is($result{ $e->[0] }, $e->[1], "$e->[1]: $e->[0]");
}

my ($no_error_log) = grep { /^TEST 3: .*should not match any line in error\.log/ }
                     keys %result;
ok($no_error_log && $result{$no_error_log} eq 'not ok',
   'a no_error_log pattern that matches fails')
    or diag $tap;

done_testing();
