package FlowScale::Fixture;

# Test fixtures for the FlowScale suite: a private PostgreSQL and simulated
# ComfyUI backends, started from a .t file before run_tests() and stopped
# when the test script exits.  Independent of which Test::Nginx is in use.

use strict;
use warnings;

use Carp qw(croak);
use Cwd ();
use Exporter 'import';
use File::Basename ();
use File::Path ();
use File::Temp ();
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();

our $VERSION = '0.01';

our @EXPORT_OK = qw(
    postgres psql stop_postgres start_postgres
    simulator stop_simulator sim_faults sim_log sim_url
    free_port
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $Root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../../..');
our $OwnerPid = $$;

my %used_ports;
my $pg;          # { port, dsn, dir, shared, stopped }
my %sims;        # name => { name, port, pid, dir, log, url, own_dir }
my $signals_set;

# ---------------------------------------------------------------------------

sub _port_is_free {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

sub free_port {
    for (1 .. 1000) {
        # below the kernel's ephemeral range (32768-60999 by default), so
        # that an outgoing connection cannot take it before our server binds
        my $port = 10000 + int rand 22000;
        next if $used_ports{$port} || ($ENV{TEST_NGINX_SERVER_PORT} // 0) == $port;
        next unless _port_is_free($port);
        $used_ports{$port} = 1;
        return $port;
    }
    croak "FlowScale::Fixture: no free TCP port found";
}

sub _catch_signals {
    return if $signals_set++;
    for my $sig (qw(INT TERM HUP)) {
        my $cur = $SIG{$sig};
        next if defined $cur && $cur ne '' && $cur ne 'DEFAULT';
        $SIG{$sig} = sub { exit 128 + ($sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1) };
    }
}

sub _run {
    my (@cmd) = @_;
    my $out = `@{[ join ' ', map { _shq($_) } @cmd ]} 2>&1`;
    return ($? >> 8, $out);
}

sub _shq {
    my $s = shift;
    return $s if $s =~ m{^[-\w./=:@,+]+$};
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

sub _pg_bindir {
    return $ENV{PG_BINDIR} if $ENV{PG_BINDIR};
    my @dirs = sort {
        my ($x) = $a =~ m{/(\d+(?:\.\d+)?)/bin$};
        my ($y) = $b =~ m{/(\d+(?:\.\d+)?)/bin$};
        ($x // 0) <=> ($y // 0);
    } grep { -x "$_/psql" } glob('/usr/lib/postgresql/*/bin');
    return $dirs[-1] if @dirs;
    for my $d (split /:/, $ENV{PATH} // '') {
        return $d if -x "$d/psql";
    }
    croak "FlowScale::Fixture: psql not found (install postgresql)";
}

sub _pg_cluster {
    my @args = @_;
    my ($rc, $out) = _run("$Root/t/bin/pg-cluster", @args);
    croak "FlowScale::Fixture: t/bin/pg-cluster @args failed:\n$out" if $rc;
    return $out;
}

sub _set_pg_env {
    $ENV{TEST_NGINX_PG_PORT} = $pg->{port};
    $ENV{TEST_NGINX_PG_DSN} = $pg->{dsn};
}

sub postgres {
    return $pg if $pg;
    _catch_signals();

    if (my $port = $ENV{FLOWSCALE_TEST_PG_PORT}) {
        $pg = { port => $port, dir => $ENV{FLOWSCALE_TEST_PG_DIR}, shared => 1 };
    } else {
        my $dir = File::Temp::tempdir('flowscale-pg-XXXXXX', TMPDIR => 1,
                                      CLEANUP => 0);
        $pg = { port => free_port(), dir => $dir, shared => 0 };
        eval { _pg_cluster('start', $dir, $pg->{port}); 1 } or do {
            my $err = $@;
            _pg_cleanup();
            die $err;
        };
    }
    $pg->{dsn} = "hostaddr=127.0.0.1 port=$pg->{port} dbname=flowscale "
                 . "user=flowscale";
    _set_pg_env();
    return $pg;
}

sub psql {
    my ($sql, %opt) = @_;
    croak "psql: call postgres() first" unless $pg;
    my $user = $opt{user} // 'flowscale';
    my $db = $opt{db} // 'flowscale';

    my ($sfh, $sql_file) = File::Temp::tempfile('fs-psql-XXXXXX', TMPDIR => 1,
                                                UNLINK => 1);
    print $sfh $sql;
    close $sfh;
    my ($efh, $err_file) = File::Temp::tempfile('fs-psql-XXXXXX', TMPDIR => 1,
                                                UNLINK => 1);
    close $efh;

    my @cmd = (_pg_bindir() . '/psql', '-X', '-q', '-A', '-t',
               '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', $pg->{port},
               '-U', $user, '-d', $db, '-f', $sql_file);
    local $ENV{PGCONNECT_TIMEOUT} = $ENV{PGCONNECT_TIMEOUT} // 10;
    my $pid = open(my $out, '-|');
    croak "psql: fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>', $err_file;
        open STDIN, '<', '/dev/null';
        { no warnings 'exec'; exec @cmd; }
        print STDERR "exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    my @rows = <$out>;
    close $out;
    my $status = $?;
    chomp @rows;
    if ($status != 0) {
        open my $e, '<', $err_file;
        my $err = do { local $/; <$e> } // '';
        croak "psql failed (exit " . ($status >> 8) . "): $err";
    }
    return wantarray ? @rows : join("\n", @rows);
}

sub stop_postgres {
    croak "stop_postgres: call postgres() first" unless $pg;
    croak "stop_postgres: the shared cluster's directory is unknown "
          . "(set FLOWSCALE_TEST_PG_DIR)" unless $pg->{dir};
    _pg_cluster('stop', $pg->{dir}, @_ ? $_[0] : 'immediate');
    $pg->{stopped} = 1;
}

sub start_postgres {
    croak "start_postgres: call postgres() first" unless $pg;
    croak "start_postgres: the shared cluster's directory is unknown "
          . "(set FLOWSCALE_TEST_PG_DIR)" unless $pg->{dir};
    _pg_cluster('start', $pg->{dir}, $pg->{port});
    $pg->{stopped} = 0;
}

sub _pg_cleanup {
    return unless $pg;
    if ($pg->{shared}) {
        # leave the shared cluster the way we found it: running
        eval { start_postgres() } if $pg->{stopped};
        warn $@ if $@;
    } elsif ($pg->{dir}) {
        _run("$Root/t/bin/pg-cluster", 'stop', $pg->{dir}, 'immediate');
        File::Path::remove_tree($pg->{dir}) unless $ENV{FLOWSCALE_TEST_KEEP};
    }
    undef $pg;
}

# ---------------------------------------------------------------------------
# Simulated ComfyUI backends
# ---------------------------------------------------------------------------

sub _sim {
    my ($name) = @_;
    my $s = $sims{$name} or croak "no simulator named '$name'";
    return $s;
}

sub sim_url { return _sim($_[0])->{url} }

sub simulator {
    my ($name, %opt) = @_;
    croak "simulator: bad name '$name'" unless defined $name && $name =~ /^\w+$/;
    _catch_signals();

    my $prev = $sims{$name};
    croak "simulator '$name' is already running" if $prev && $prev->{pid};

    my $timeout = delete $opt{startup_timeout} // 10;
    my $port = delete $opt{port} // ($prev && $prev->{port}) // free_port();
    my $own_dir = !defined $opt{dir} && !($prev && $prev->{dir});
    my $dir = delete $opt{dir} // ($prev && $prev->{dir})
              // File::Temp::tempdir("flowscale-$name-XXXXXX", TMPDIR => 1,
                                     CLEANUP => 0);
    $own_dir ||= $prev && $prev->{own_dir};
    my $script = delete $opt{script} // $ENV{FLOWSCALE_SIM}
                 // "$Root/t/sim/comfyui_sim.py";
    my $python = $ENV{FLOWSCALE_PYTHON} // '/usr/bin/python3';
    my @extra = @{ delete $opt{args} // [] };

    my @flags;
    for my $k (sort keys %opt) {
        (my $flag = "--$k") =~ tr/_/-/;
        my $v = $opt{$k};
        if (!defined $v) {
            push @flags, $flag;
        } elsif (ref $v eq 'ARRAY') {
            push @flags, map { ($flag, $_) } @$v;
        } else {
            push @flags, $flag, $v;
        }
    }

    my @cmd = ($python, $script, '--port', $port, '--dir', $dir, @flags,
               @extra);
    my $log = "$dir/sim-$name.log";
    my $log_pos = -s $log || 0;

    my $pid = fork();
    croak "simulator: fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        $ENV{PYTHONUNBUFFERED} = 1;
        { no warnings 'exec'; exec @cmd; }
        print STDERR "exec @cmd failed: $!\n";
        POSIX::_exit(127);
    }

    my $s = { name => $name, port => $port, pid => $pid, dir => $dir,
              own_dir => $own_dir, log => $log,
              url => "http://127.0.0.1:$port", cmd => \@cmd };
    $sims{$name} = $s;

    my $ready = qr{comfyui-sim listening on http://127\.0\.0\.1:$port\b};
    my $deadline = Time::HiRes::time() + $timeout;
    while (1) {
        if (open my $in, '<', $log) {
            seek $in, $log_pos, 0;
            my $text = do { local $/; <$in> } // '';
            last if $text =~ $ready;
        }
        my $gone = waitpid($pid, POSIX::WNOHANG()) == $pid;
        if ($gone || Time::HiRes::time() > $deadline) {
            stop_simulator($name) unless $gone;
            $s->{pid} = undef;
            my $text = '';
            if (open my $in, '<', $log) {
                seek $in, $log_pos, 0;
                $text = do { local $/; <$in> } // '';
            }
            croak "simulator '$name' " . ($gone ? 'exited' : 'did not start')
                  . " (@cmd):\n$text";
        }
        Time::HiRes::sleep(0.02);
    }

    $ENV{'TEST_NGINX_' . uc($name) . '_PORT'} = $port;
    return $s;
}

sub stop_simulator {
    my ($name) = @_;
    my $s = _sim($name);
    my $pid = $s->{pid} or return;
    undef $s->{pid};
    kill 'TERM', -$pid;
    kill 'TERM', $pid;
    my $deadline = Time::HiRes::time() + 5;
    while (Time::HiRes::time() < $deadline) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        return if $r == $pid || $r == -1;
        Time::HiRes::sleep(0.02);
    }
    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

my $json = JSON::PP->new->utf8->canonical;

sub _http {
    my ($method, $name, $path, $body) = @_;
    my $s = _sim($name);
    my %req = (headers => { Accept => 'application/json' });
    if (defined $body) {
        $req{content} = $json->encode($body);
        $req{headers}{'Content-Type'} = 'application/json';
    }
    my $res = HTTP::Tiny->new(timeout => 10)->request($method, "$s->{url}$path",
                                                      \%req);
    croak "$method $s->{url}$path: $res->{status} $res->{reason}: "
          . ($res->{content} // '') unless $res->{success};
    my $c = $res->{content};
    return 1 unless defined $c && $c =~ /\S/;
    return $json->decode($c);
}

sub sim_faults {
    my ($name, $faults) = @_;
    croak "sim_faults: a hash ref of faults is needed"
        unless ref $faults eq 'HASH';
    return _http('POST', $name, '/sim/faults', $faults);
}

sub sim_log {
    my ($name) = @_;
    return _http('GET', $name, '/sim/log');
}

END {
    if ($$ == $OwnerPid) {
        local $?;
        for my $name (sort keys %sims) {
            my $s = $sims{$name};
            eval { stop_simulator($name) };
            File::Path::remove_tree($s->{dir})
                if $s->{own_dir} && !$ENV{FLOWSCALE_TEST_KEEP};
        }
        _pg_cleanup();
    }
}

1;

__END__

=head1 NAME

FlowScale::Fixture - PostgreSQL and simulated ComfyUI backends for the tests

=head1 SYNOPSIS

    use Test::Nginx::Socket 'no_plan';
    use FlowScale::Fixture;

    FlowScale::Fixture::postgres();            # sets $TEST_NGINX_PG_DSN
    FlowScale::Fixture::psql("insert into ...");
    my $sim = FlowScale::Fixture::simulator('sim1', step_time => 0.05);
                                               # sets $TEST_NGINX_SIM1_PORT
    run_tests();

    # in a block's --- init, for example:
    FlowScale::Fixture::sim_faults('sim1', { fail_node => "9" });
    my ($n) = FlowScale::Fixture::psql("select count(*) from runs");

Functions can also be imported: C<use FlowScale::Fixture qw(postgres psql)>
or C<qw(:all)>.  Everything started is stopped when the test script exits
(normally, by C<die>, or on SIGINT/SIGTERM/SIGHUP).

=head1 POSTGRESQL

=over

=item postgres()

Makes a database available and returns C<{ port, dsn, dir, shared }>; a
second call returns the same.  If C<FLOWSCALE_TEST_PG_PORT> is set, the
cluster already running there (started by C<make test>) is used, and
C<FLOWSCALE_TEST_PG_DIR>, if set, names its directory (needed only for
stop_postgres/start_postgres).  Otherwise a throw-away cluster is created in
a temporary directory on a free port with C<t/bin/pg-cluster start>: role and
database C<flowscale>, trust authentication on 127.0.0.1 only, F<sql/*.sql>
applied in name order.  Sets C<$ENV{TEST_NGINX_PG_PORT}> and
C<$ENV{TEST_NGINX_PG_DSN}> (C<hostaddr=127.0.0.1 port=P dbname=flowscale
user=flowscale>).

=item psql($sql, user => 'flowscale', db => 'flowscale')

Runs the SQL (several statements allowed) with C<psql -X -A -t -v
ON_ERROR_STOP=1> and returns the output rows, columns separated by C<|>, in
list context; the rows joined by newlines in scalar context.  Dies with
psql's message on error.

=item stop_postgres([MODE]), start_postgres()

Stop (C<pg_ctl -m immediate> by default) and start again the same cluster,
on the same port, to test what happens when the database goes away.  A
shared cluster stopped this way is started again at exit.

=back

=head1 SIMULATORS

=over

=item simulator($name, %options)

Starts C</usr/bin/python3 t/sim/comfyui_sim.py --port P --dir D [flags]>,
waits (10 s, or C<startup_timeout>) until it prints C<comfyui-sim listening
on http://127.0.0.1:P>, sets C<$ENV{TEST_NGINX_${NAME}_PORT}> (name upper
cased) and returns C<{ name, port, pid, dir, log, url }>.  Options: C<port>,
C<dir> (default: a new temporary directory, removed at exit),
C<startup_timeout>, C<args> (an array of extra command-line words), C<script>
(or env C<FLOWSCALE_SIM>); every other C<key =E<gt> value> becomes C<--key
value> with underscores turned into dashes (C<step_time =E<gt> 0.1> is
C<--step-time 0.1>); an undef value gives a bare C<--key>, an array ref
repeats the flag.  Its output goes to C<sim-NAME.log> in its directory.
Calling simulator() again for a stopped name restarts it on the same port
and directory.  C<FLOWSCALE_PYTHON> overrides the interpreter.

=item stop_simulator($name)

SIGTERM (then SIGKILL after 5 s) to the simulator's process group.

=item sim_faults($name, \%faults)

POSTs the hash as JSON to the simulator's C</sim/faults>; returns the
decoded JSON answer (or 1 if empty).  Dies if the status is not 2xx.

=item sim_log($name)

GETs C</sim/log> and returns it decoded.

=item sim_url($name), free_port()

The simulator's base URL; a free TCP port on 127.0.0.1 below the ephemeral
range.

=back

C<FLOWSCALE_TEST_KEEP=1> keeps the temporary directories for inspection.

=cut
