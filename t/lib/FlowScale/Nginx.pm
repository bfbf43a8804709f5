package FlowScale::Nginx;

# A real nginx for multi-step end-to-end tests (t/e2e): started in a
# temporary server root with a given http{} snippet, the modules of
# $TEST_NGINX_LOAD_MODULES, a master and N workers; reloadable, stoppable,
# with HTTP helpers.  See the POD at the end.

use strict;
use warnings;

use Carp qw(croak);
use Cwd ();
use File::Basename ();
use File::Path ();
use File::Spec ();
use File::Temp ();
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);
use Test::More ();
use Time::HiRes ();

use FlowScale::Fixture ();

our $VERSION = '0.01';

our $Root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../../..');
our $OwnerPid = $$;

my %live;        # "$self" => $self, for the END cleanup
my $json = JSON::PP->new->utf8->canonical->allow_nonref;

# the lines in an error log (or valgrind log) that fail a test at stop()
our @BadPatterns = (
    qr/\[(?:alert|emerg|crit)\]/,
    qr/signal (?:11|6|7|4|8)\b/,
    qr/core dumped/,
    qr/ERROR: AddressSanitizer/,
    qr/ERROR: LeakSanitizer/,
    qr/runtime error: /,                 # UBSan
    qr/^==\d+== (?:Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination overlap|\d+ bytes in \d+ blocks are definitely lost)/m,
);

sub new {
    my ($class, %opt) = @_;

    my $valgrind = $ENV{TEST_NGINX_USE_VALGRIND};
    $valgrind = undef if defined $valgrind && ($valgrind eq '' || $valgrind eq '0');

    my $self = bless {
        binary   => $opt{binary} // $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx',
        http     => $opt{http} // '',
        server   => $opt{server},
        main     => $opt{main} // '',
        events   => $opt{events} // '',
        # under valgrind: one worker, but the master stays (valgrind follows
        # fork), since nginx cannot reload with master_process off
        workers  => $valgrind ? 1 : ($opt{workers} // 2),
        master   => 1,
        valgrind => $valgrind,
        level    => $opt{debug} ? 'debug' : ($opt{log_level} // 'info'),
        port     => $opt{port} // FlowScale::Fixture::free_port(),
        timeout  => $opt{timeout} // 30,
        files    => $opt{files} // {},
        allow    => $opt{allow_log} // [],      # bad lines that are expected
        name     => $opt{name} // 'nginx',
    }, $class;

    $self->{dir} = File::Temp::tempdir('flowscale-nginx-XXXXXX', TMPDIR => 1,
                                       CLEANUP => 0);
    for my $d (qw(conf logs html client_body_temp proxy_temp fastcgi_temp
                  uwsgi_temp scgi_temp)) {
        mkdir "$self->{dir}/$d";
    }
    $self->{conf} = "$self->{dir}/conf/nginx.conf";
    $self->{error_log} = "$self->{dir}/logs/error.log";
    $self->{pid_file} = "$self->{dir}/logs/nginx.pid";
    $self->{stderr} = "$self->{dir}/logs/stderr.log";
    $self->{valgrind_log} = "$self->{dir}/logs/valgrind.%p.log";

    $self->_write_files;
    $self->_write_config;
    $self->start unless $opt{no_start};
    return $self;
}

sub port { $_[0]{port} }
sub dir { $_[0]{dir} }
sub base_url { "http://127.0.0.1:$_[0]{port}" }

sub url {
    my ($self, $path) = @_;
    return $self->base_url . ($path // '/');
}

# ---------------------------------------------------------------------------
# configuration

sub _expand {
    my ($self, $text) = @_;
    $text =~ s/\$TEST_NGINX_SERVER_PORT\b|\@PORT\@/$self->{port}/g;
    $text =~ s/\$(TEST_NGINX_\w+)/exists $ENV{$1} ? $ENV{$1} : "\$$1"/ge;
    return $text;
}

sub _write_files {
    my ($self) = @_;
    for my $rel (sort keys %{ $self->{files} }) {
        my $path = "$self->{dir}/conf/$rel";
        File::Path::make_path(File::Basename::dirname($path));
        open my $out, '>', $path or croak "cannot write $path: $!";
        print $out $self->_expand($self->{files}{$rel});
        close $out;
    }
}

sub set_config {
    my ($self, %opt) = @_;
    for my $k (qw(http server main events)) {
        $self->{$k} = $opt{$k} if exists $opt{$k};
    }
    if ($opt{files}) {
        $self->{files} = { %{ $self->{files} }, %{ $opt{files} } };
        $self->_write_files;
    }
    $self->_write_config;
}

sub _write_config {
    my ($self) = @_;
    my $d = $self->{dir};
    my @mods = map { "load_module $_;" } grep { length }
               split /\s+/, $ENV{TEST_NGINX_LOAD_MODULES} // '';
    my $user = $> == 0 ? "user root;" : '';
    my $master = $self->{master} ? 'on' : 'off';
    my $http = $self->_expand($self->{http});
    my $server = '';
    if (defined $self->{server}) {
        $server = "    server {\n        listen 127.0.0.1:$self->{port};\n"
                  . $self->_expand($self->{server}) . "\n    }\n";
    }
    my $main = $self->_expand($self->{main});
    # extra main-context lines for debugging, e.g. core dumps:
    # FLOWSCALE_NGINX_MAIN='worker_rlimit_core 2g; working_directory /tmp;'
    $main .= "\n$ENV{FLOWSCALE_NGINX_MAIN}" if $ENV{FLOWSCALE_NGINX_MAIN};
    my $events = $self->_expand($self->{events});

    open my $out, '>', $self->{conf} or croak "cannot write $self->{conf}: $!";
    print $out <<"CONF";
# generated by t/lib/FlowScale/Nginx.pm
@{[ join "\n", @mods ]}
$user
worker_processes $self->{workers};
master_process $master;
daemon off;
error_log $self->{error_log} $self->{level};
pid $self->{pid_file};
env ASAN_OPTIONS;
env LSAN_OPTIONS;
env UBSAN_OPTIONS;
env LD_PRELOAD;
$main

events {
    worker_connections 1024;
    accept_mutex off;
$events
}

http {
    access_log $d/logs/access.log;
    default_type text/plain;
    client_body_temp_path $d/client_body_temp;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;

$http
$server
}
CONF
    close $out;
}

sub _cmd {
    my ($self, @args) = @_;
    return ($self->{binary}, '-p', "$self->{dir}/", '-c', $self->{conf},
            '-e', $self->{error_log}, @args);
}

sub _valgrind_cmd {
    my ($self) = @_;
    my $v = $self->{valgrind};
    my @pre = ('valgrind', '-q', "--log-file=$self->{valgrind_log}");
    if ($v =~ /^\d+$/) {
        # workers exit without freeing their cycle: leaks are not checked,
        # memory errors (invalid reads/writes, uninitialised values) are
        push @pre, qw(--tool=memcheck --leak-check=no --num-callers=50);
        for my $supp ("$Root/t/valgrind.suppress", "$Root/valgrind.suppress") {
            if (-f $supp) { push @pre, "--suppressions=$supp"; last }
        }
    } else {
        push @pre, split ' ', $v;
    }
    return @pre;
}

# nginx -t with this configuration: (exit status, output)
sub test_config {
    my ($self) = @_;
    my @cmd = $self->_cmd('-t');
    my $out = `@{[ join ' ', map { "'$_'" } @cmd ]} 2>&1`;
    return ($? >> 8, $out);
}

# ---------------------------------------------------------------------------
# life cycle

sub start {
    my ($self) = @_;
    croak "nginx already running" if $self->{pid};

    my ($rc, $out) = $self->test_config;
    croak "nginx -t failed for $self->{conf}:\n$out\n" if $rc;

    $self->{log_pos} = -s $self->{error_log} || 0;
    my @cmd = $self->_cmd;
    unshift @cmd, $self->_valgrind_cmd if $self->{valgrind};

    my $pid = fork();
    croak "fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->{stderr};
        open STDERR, '>>', $self->{stderr};
        { no warnings 'exec'; exec @cmd; }
        print STDERR "exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $live{"$self"} = $self;

    my $deadline = Time::HiRes::time() + ($self->{valgrind} ? 120 : 15);
    while (1) {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            delete $self->{pid};
            delete $live{"$self"};
            croak "nginx exited at startup (status $?):\n"
                  . _tail($self->{stderr}, 20) . _tail($self->{error_log}, 30)
                  . join('', map { _tail($_, 40) } $self->_valgrind_logs);
        }
        last if $self->_answers;
        if (Time::HiRes::time() > $deadline) {
            $self->_kill;
            croak "nginx did not answer on port $self->{port}:\n"
                  . _tail($self->{error_log}, 30);
        }
        Time::HiRes::sleep(0.05);
    }
    return $self;
}

sub _answers {
    my ($self) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port}, Proto => 'tcp',
                                  Timeout => 1) or return 0;
    print $s "GET /__flowscale_ping HTTP/1.0\r\nHost: localhost\r\n\r\n";
    my $sel = IO::Select->new($s);
    my $line = '';
    if ($sel->can_read(2)) {
        sysread $s, $line, 64;
    }
    close $s;
    return $line =~ m{^HTTP/1\.\d \d{3}};
}

sub pid { $_[0]{pid} }

sub _valgrind_logs {
    my ($self) = @_;
    return grep { -s } glob "$self->{dir}/logs/valgrind.*.log";
}

# the worker processes of the master now
sub workers {
    my ($self) = @_;
    return ($self->{pid}) unless $self->{master};
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $in, '<', $stat or next;
        my $line = <$in> // next;
        close $in;
        # pid (comm) state ppid ...
        next unless $line =~ /^(\d+) \((.*)\) \S+ (\d+)/s;
        push @kids, $1 if $3 == $self->{pid};
    }
    return sort { $a <=> $b } @kids;
}

sub reload {
    my ($self, %opt) = @_;
    croak "nginx is not running" unless $self->{pid};
    my ($rc, $out) = $self->test_config;
    croak "nginx -t failed before reload:\n$out\n" if $rc;

    my %old = map { $_ => 1 } $self->workers;
    my $pos = -s $self->{error_log} || 0;
    kill 'HUP', $self->{pid} or croak "cannot signal nginx: $!";

    my $deadline = Time::HiRes::time() + ($opt{timeout} // 15);
    while (1) {
        croak "nginx exited during reload:\n" . _tail($self->{error_log}, 30)
            if waitpid($self->{pid}, POSIX::WNOHANG()) == $self->{pid};
        my $log = _read_from($self->{error_log}, $pos);
        croak "reload refused:\n$log" if $log =~ /\[emerg\]/;
        if ($self->{master}) {
            my @new = grep { !$old{$_} } $self->workers;
            last if @new >= $self->{workers} && $self->_answers;
        } else {
            last if $log =~ /reconfiguring/ && $self->_answers;
        }
        croak "nginx did not reload:\n" . _tail($self->{error_log}, 30)
            if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    # a little time for the new workers' init_process
    Time::HiRes::sleep(0.1);
    return 1;
}

sub _kill {
    my ($self, $sig) = @_;
    my $pid = delete $self->{pid} or return;
    delete $live{"$self"};
    kill $sig // 'QUIT', $pid;
    my $deadline = Time::HiRes::time() + ($self->{valgrind} ? 60 : 10);
    while (Time::HiRes::time() < $deadline) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        return $? if $r == $pid || $r == -1;
        Time::HiRes::sleep(0.05);
    }
    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return 'killed';
}

# Stops nginx (graceful: QUIT, then TERM after `grace` seconds), then fails
# the test if its error log or the valgrind report has anything bad.
sub stop {
    my ($self, %opt) = @_;
    return unless $self->{pid};
    my $pid = $self->{pid};
    kill 'QUIT', $pid;
    my $grace = $opt{grace} // 5;
    my $deadline = Time::HiRes::time() + $grace;
    my $gone;
    while (Time::HiRes::time() < $deadline) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        if ($r == $pid || $r == -1) { $gone = 1; last }
        Time::HiRes::sleep(0.05);
    }
    my $how = $gone ? 'exited' : $self->_kill('TERM');
    delete $self->{pid};
    delete $live{"$self"};
    my $clean = 1;
    unless ($opt{quiet}) {
        Test::More::ok($gone, "$self->{name}: stopped gracefully within ${grace}s")
            or $clean = 0;
        $self->check_logs or $clean = 0;
    }
    if ($clean && !$opt{quiet} && !$ENV{FLOWSCALE_TEST_KEEP}) {
        File::Path::remove_tree($self->{dir});
    } else {
        Test::More::diag("$self->{name}: server root kept in $self->{dir}");
    }
    return $how;
}

sub bad_log_lines {
    my ($self) = @_;
    my @bad;
    my @allow = @{ $self->{allow} };
    for my $file ($self->{error_log}, $self->{stderr}, $self->_valgrind_logs) {
        next unless -s $file;
        open my $in, '<', $file or next;
        while (my $l = <$in>) {
            next unless grep { $l =~ $_ } @BadPatterns;
            next if grep { $l =~ $_ } @allow;
            push @bad, $l;
        }
        close $in;
    }
    return @bad;
}

sub check_logs {
    my ($self) = @_;
    my @bad = $self->bad_log_lines;
    my $ok = Test::More::ok(!@bad, "$self->{name}: no alert, crit, emerg, crash or "
                          . "memory error in the logs")
        or Test::More::diag(join '', @bad[0 .. ($#bad < 30 ? $#bad : 29)]);
    for my $log ($self->_valgrind_logs) {
        my $report = _read_from($log, 0);
        if ($report =~ /\S/) {
            Test::More::fail("$self->{name}: valgrind reported errors");
            Test::More::diag($report);
            $ok = 0;
        }
    }
    return $ok;
}

# the error log's text (from a mark, see log_mark)
sub error_log {
    my ($self, $from) = @_;
    return _read_from($self->{error_log}, $from // 0);
}

sub log_mark { -s $_[0]{error_log} || 0 }

sub _read_from {
    my ($file, $pos) = @_;
    open my $in, '<', $file or return '';
    seek $in, $pos, 0 if $pos;
    local $/;
    my $t = <$in>;
    close $in;
    return $t // '';
}

sub _tail {
    my ($file, $n) = @_;
    open my $in, '<', $file or return '';
    my @l = <$in>;
    close $in;
    splice @l, 0, @l - $n if @l > $n;
    return join '', @l;
}

# ---------------------------------------------------------------------------
# HTTP

# request(METHOD, PATH, content => ..., headers => {...}, json => DATA,
#         timeout => S) -> { status, reason, headers (lower-case keys),
#         content, json (decoded when the type is JSON), elapsed }
sub request {
    my ($self, $method, $path, %opt) = @_;
    my %headers = %{ $opt{headers} // {} };
    my $content = $opt{content};
    if (exists $opt{json}) {
        $content = $json->encode($opt{json});
        $headers{'Content-Type'} //= 'application/json';
    }
    my $http = HTTP::Tiny->new(timeout => $opt{timeout} // $self->{timeout},
                               keep_alive => 0, max_redirect => 0);
    my %req = (headers => \%headers);
    $req{content} = $content if defined $content;
    my $t0 = Time::HiRes::time();
    my $res = $http->request($method, $self->url($path), \%req);
    $res->{elapsed} = Time::HiRes::time() - $t0;
    my $ct = $res->{headers}{'content-type'} // '';
    if ($ct =~ m{^application/(?:[\w.+-]+\+)?json\b}i
        && defined $res->{content} && length $res->{content})
    {
        $res->{json} = eval { $json->decode($res->{content}) };
        $res->{json_error} = $@ if $@;
    }
    return $res;
}

sub get { my ($self, $path, %o) = @_; return $self->request('GET', $path, %o) }

sub post_json {
    my ($self, $path, $data, %o) = @_;
    return $self->request('POST', $path, json => $data, %o);
}

sub decode_json { return $json->decode($_[-1]) }
sub encode_json { return $json->encode($_[-1]) }

# a raw TCP connection to nginx (IO::Socket::INET)
sub connect {
    my ($self) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port}, Proto => 'tcp',
                                  Timeout => 5)
        or croak "cannot connect to nginx on $self->{port}: $!";
    $s->autoflush(1);
    return $s;
}

# Sends the bytes and, after `after` seconds (or once `until` matches what
# was read so far), closes the socket (with RST when reset => 1).  Returns
# what was read.
sub send_and_close {
    my ($self, $bytes, %opt) = @_;
    my $s = $self->connect;
    print $s $bytes;
    my $got = '';
    my $sel = IO::Select->new($s);
    my $deadline = Time::HiRes::time() + ($opt{after} // 0.5);
    while ((my $left = $deadline - Time::HiRes::time()) > 0) {
        last if $opt{until} && $got =~ $opt{until};
        last unless $sel->can_read($left);
        my $n = sysread $s, my $buf, 65536;
        last unless $n;
        $got .= $buf;
    }
    if ($opt{reset}) {
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    }
    close $s;
    return $got;
}

# An HTTP/1.1 request as bytes, with Content-Length and Connection: close.
sub raw_request {
    my ($self, $method, $path, %opt) = @_;
    my $body = $opt{content} // '';
    my %h = (Host => 'localhost', Connection => 'close',
             %{ $opt{headers} // {} });
    $h{'Content-Length'} = length $body if length $body || $method eq 'POST';
    return "$method $path HTTP/1.1\r\n"
           . join('', map { "$_: $h{$_}\r\n" } sort keys %h) . "\r\n" . $body;
}

DESTROY {
    my ($self) = @_;
    return unless $$ == $OwnerPid;
    $self->_kill('TERM') if $self->{pid};
}

END {
    if ($$ == $OwnerPid) {
        local $?;
        for my $self (values %live) {
            eval { $self->_kill('TERM') };
        }
        %live = ();
    }
}

1;

__END__

=head1 NAME

FlowScale::Nginx - a real nginx for end-to-end tests

=head1 SYNOPSIS

    use Test::More;
    use FlowScale::Fixture qw(postgres simulator);
    use FlowScale::Nginx;

    postgres();
    simulator('sim1', step_time => 0.02);
    my $ng = FlowScale::Nginx->new(http => <<'HTTP');
        flowscale_database "$TEST_NGINX_PG_DSN";
        upstream comfyui { server 127.0.0.1:$TEST_NGINX_SIM1_PORT; }
        server {
            listen 127.0.0.1:@PORT@;
            location /v1/x { ... }
        }
    HTTP
    my $res = $ng->post_json('/v1/x', { inputs => {...} },
                             headers => { Prefer => 'wait=10' });
    is $res->{status}, 200;
    is $res->{json}{status}, 'succeeded';
    $ng->reload;
    $ng->stop;            # fails the test on [alert]/[crit]/[emerg]/crashes
    done_testing;

=head1 DESCRIPTION

C<new(%opt)> writes F<conf/nginx.conf> in a fresh temporary server root and
starts C<$TEST_NGINX_BINARY> (default F</usr/sbin/nginx>) with C<daemon off>
in the background, master process on and C<workers> (default 2) workers,
C<user root> when run as root, the C<load_module> lines of
C<$TEST_NGINX_LOAD_MODULES>, C<error_log logs/error.log info> (C<debug =E<gt>
1> for debug), and waits until it answers HTTP on its port.

Options: C<http> (text inside C<http {}>), C<server> (text of one C<server
{}> that listens on the port, added to C<http>), C<main>, C<events>,
C<workers>, C<debug>, C<log_level>, C<port> (default: a free one), C<files>
(C<{ 'rel/path' =E<gt> text }> written under F<conf/>), C<allow_log> (regexps
of bad-looking lines that are expected), C<timeout> (HTTP, default 30 s),
C<no_start>.  In the texts C<@PORT@> and C<$TEST_NGINX_SERVER_PORT> are the
port, and C<$TEST_NGINX_*> are taken from the environment.

C<TEST_NGINX_USE_VALGRIND> runs nginx under valgrind memcheck (a number:
the default options; else the options themselves) with one worker process;
the master stays on, since nginx cannot reload with C<master_process off>,
and valgrind follows its fork (one F<logs/valgrind.PID.log> each).  Leaks
are not checked (workers exit without freeing their cycle); any other
valgrind report fails C<stop()>.
C<FLOWSCALE_NGINX_MAIN> adds main-context lines, for debugging (for example
C<worker_rlimit_core 2g; working_directory /tmp;> to get core dumps).  The
server root is removed after a clean C<stop()>, and kept (its path printed)
after a failure or with C<FLOWSCALE_TEST_KEEP=1>.

=head1 METHODS

C<port>, C<url(PATH)>, C<dir>, C<pid>, C<workers> (the worker pids now),
C<reload> (C<nginx -t>, SIGHUP, then waits until new workers serve),
C<set_config(%opt)> (rewrite before a reload), C<stop(grace =E<gt> S)>
(SIGQUIT; a test that nginx stopped in time and one that the logs are
clean), C<check_logs>, C<error_log([MARK])>, C<log_mark>, C<test_config>.

HTTP: C<request(METHOD, PATH, headers =E<gt> {}, content =E<gt> BYTES, json
=E<gt> DATA, timeout =E<gt> S)> and C<get>, C<post_json> return HTTP::Tiny's
hash (lower-case header names) plus C<json> (decoded for JSON types,
problem+json included) and C<elapsed>.  C<connect> (a raw socket),
C<raw_request> (bytes), C<send_and_close(BYTES, after =E<gt> S, until =E<gt>
QR, reset =E<gt> 1)> for clients that leave early.  C<decode_json>,
C<encode_json>.

=cut
