package Test::Nginx::Socket;

# A small, project-owned implementation of the Test::Nginx::Socket test
# interface (blocks of "--- section" data run against a freshly started nginx),
# written for FlowScale on top of Debian's Test::Base.  Only the semantics of
# the upstream interface are supported, under the same names, so that a .t
# file written against this module runs unchanged under the upstream one.
# See the POD at the end for what is and is not supported.

use strict;
use warnings;

use Test::Base ();
our @ISA = ('Test::Base');

use Cwd ();
use Errno ();
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use File::Path ();
use File::Spec ();
use HTTP::Response ();
use IO::Select ();
use IO::Socket::INET ();
use List::Util ();
use POSIX ();
use Scalar::Util ();
use Time::HiRes ();

our $VERSION = '0.01';

our @EXPORT = qw(
    run_tests run_test repeat_each no_shuffle no_long_string is_str
    log_level master_on master_off master_process_enabled workers
    worker_connections env_to_nginx add_block_preprocessor config_preamble
    no_root_location server_name server_addr server_root html_dir
    server_port server_port_for_client timeout no_nginx_manager
    check_accum_error_log bail_out add_cleanup_handler
    add_test_cleanup_handler add_response_body_check
);

# ---------------------------------------------------------------------------
# Settings (environment first, then the functions below)
# ---------------------------------------------------------------------------

sub _find_nginx {
    for my $dir (split /:/, $ENV{PATH} // '') {
        my $f = "$dir/nginx";
        return $f if -f $f && -x _;
    }
    return '/usr/sbin/nginx';
}

sub _port_is_free {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# Ports below the kernel's ephemeral range, so that an outgoing connection
# (to PostgreSQL, a simulator...) cannot take the port before nginx binds it.
sub _pick_port {
    my ($used) = @_;
    $used ||= {};
    for (1 .. 1000) {
        my $port = 10000 + int rand 22000;
        next if $used->{$port};
        return $port if _port_is_free($port);
    }
    return undef;
}

srand($$ ^ int(Time::HiRes::time() * 1000));

our $NginxBinary        = $ENV{TEST_NGINX_BINARY} || _find_nginx();
our $ServerAddr         = '127.0.0.1';
our $ServerName         = 'localhost';
our $ServerPort         = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                          || _pick_port();
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $Timeout            = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep     = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $LogLevel           = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled      = 'on';
our $Workers            = 1;
our $WorkerConnections  = 64;
our $RepeatEach         = 1;
our $NoShuffle          = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoLongString       = 0;
our $NoRootLocation     = 0;
our $NoNginxManager     = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $CheckAccumErrLog   = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $UseValgrind        = $ENV{TEST_NGINX_USE_VALGRIND};
our $LoadModules        = $ENV{TEST_NGINX_LOAD_MODULES};
our $Verbose            = $ENV{TEST_NGINX_VERBOSE};
our $Randomize          = $ENV{TEST_NGINX_RANDOMIZE};
our $ForceRestartOnTest = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} // 1;
our $ConfigPreamble     = '';
our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;
our @TestCleanupHandlers;
our @ResponseBodyChecks;

die "TEST_NGINX_SERVER_PORT: no free port found\n" unless $ServerPort;

our $ServRoot = $Randomize
    ? File::Spec->rel2abs("t/servroot_$ServerPort")
    : ($ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot'));

our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $StderrFile = "$LogDir/stderr.log";
our $ValgrindLog = "$LogDir/valgrind.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";
our $CacheDir   = "$ServRoot/cache";

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

if ($UseValgrind) {
    $DaemonEnabled = 'off';
}

# run-time state
our $NginxVersion;          # canonical, e.g. 1.022001
our $PrevConfig;
our $PrevBlock;
our $ErrLogFilePos = 0;
our $RandPorts = {};
our $ChildPid;              # nginx run in the foreground (valgrind mode)
our $FirstTime = 1;
our $OwnerPid = $$;

# ---------------------------------------------------------------------------
# The functions a .t file calls
# ---------------------------------------------------------------------------

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub no_shuffle () { $NoShuffle = 1 }
sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }
sub master_process_enabled {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = $_[0] ? 'on' : 'off';
}
sub log_level { $LogLevel = shift if @_; return $LogLevel }
sub workers { $Workers = shift if @_; return $Workers }
sub worker_connections { $WorkerConnections = shift if @_; return $WorkerConnections }
sub timeout { $Timeout = shift if @_; return $Timeout }
sub config_preamble ($) { $ConfigPreamble = shift }
sub server_name { $ServerName = shift if @_; return $ServerName }
sub server_addr { $ServerAddr = shift if @_; return $ServerAddr }
sub server_root () { return $ServRoot }
sub html_dir () { return $HtmlDir }
sub server_port { $ServerPort = shift if @_; return $ServerPort }
sub server_port_for_client {
    $ServerPortForClient = shift if @_;
    return $ServerPortForClient;
}
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($) { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

sub env_to_nginx {
    die "env_to_nginx: no arguments\n" unless @_;
    for my $v (@_) {
        die "env_to_nginx: bad argument: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub bail_out {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub is_str {
    my ($got, $expected, $desc) = @_;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    return _is_string($got, $expected, $desc);
}

# Like Test::More::is, but a failure on long strings shows where the two
# strings start to differ instead of dumping both.
sub _is_string {
    my ($got, $expected, $desc) = @_;
    if ($NoLongString || !defined $got || !defined $expected
        || (length($got) < 200 && length($expected) < 200)
        || $got eq $expected)
    {
        return Test::More::is($got, $expected, $desc);
    }
    my $tb = Test::More->builder;
    my $ok = $tb->ok(0, $desc);
    my $i = 0;
    $i++ while $i < length $got && $i < length $expected
               && substr($got, $i, 1) eq substr($expected, $i, 1);
    my $ctx = sub {
        my $s = substr($_[0], $i > 20 ? $i - 20 : 0, 60);
        return _fmt_str($s);
    };
    $tb->diag("    strings differ at offset $i\n"
              . "         got: \"" . $ctx->($got) . "\"\n"
              . "    expected: \"" . $ctx->($expected) . "\"\n"
              . "      length: got " . length($got)
              . ", expected " . length($expected));
    return $ok;
}

sub run_tests () {
    $NginxVersion = _nginx_version();
    my @blocks = Test::Base::blocks();
    @blocks = List::Util::shuffle(@blocks) unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
        $_->($block) for @TestCleanupHandlers;
        $PrevBlock = $block;
    }
    cleanup();
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

sub _warn { warn @_ if $Verbose }

sub _fmt_str {
    my $s = shift;
    return '' unless defined $s;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub _trim_summary {
    my $s = shift;
    return '' unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    $s =~ s/\s{2,}/ /g;
    return $s;
}

sub parse_time {
    my $t = shift;
    return undef unless defined $t;
    if ($t =~ /^([\d.]+)\s*ms$/) {
        return $1 / 1000;
    }
    $t =~ s/^([\d.]+)\s*s$/$1/;
    return $t;
}

sub _nginx_version {
    my $out = `'$NginxBinary' -V 2>&1`;
    if ($? != 0 || !defined $out) {
        bail_out("cannot run \"$NginxBinary -V\": " . ($out // ''));
    }
    if ($out =~ m{/(\d+)\.(\d+)\.(\d+)}) {
        return sprintf("%d.%03d%03d", $1, $2, $3);
    }
    bail_out("cannot parse the output of \"$NginxBinary -V\": $out");
}

# $TEST_NGINX_FOO -> $ENV{TEST_NGINX_FOO}; $TEST_NGINX_RAND_PORT_N -> a free
# port, the same one for the whole block.
sub expand_env_in_text {
    my ($text, $name, $rand_ports) = @_;
    return $text unless defined $text && !ref $text;
    $rand_ports ||= $RandPorts;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $v;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            if (!defined $rand_ports->{$var}) {
                my %used = ($ServerPort => 1,
                            map { $_ => 1 } values %$rand_ports);
                my $p = _pick_port(\%used)
                    or bail_out("$name - no free port for \$$var");
                $rand_ports->{$var} = $p;
            }
            $v = $rand_ports->{$var};
        } else {
            if (!defined $ENV{$var}) {
                my %hint = (
                    TEST_NGINX_HTML_DIR => '$TEST_NGINX_SERVER_ROOT/html',
                    TEST_NGINX_SERVROOT => '$TEST_NGINX_SERVER_ROOT',
                    TEST_NGINX_PORT     => '$TEST_NGINX_SERVER_PORT',
                );
                my $h = $hint{$var}
                        ? " (the upstream Test::Nginx does not define it"
                          . " either: use $hint{$var})"
                        : '';
                bail_out("$name - No environment $var defined$h.\n");
            }
            $v = $ENV{$var};
        }
        $v;
    }ge;
    return $text;
}

sub _is_running {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    # a zombie that nobody reaps is not running
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $stat = <$fh> // '';
        return 0 if $stat =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

sub _read_pid_file {
    open my $in, '<', $PidFile or return undef;
    my $pid = <$in>;
    close $in;
    return undef unless defined $pid;
    chomp $pid;
    return $pid =~ /^\d+$/ ? $pid : undef;
}

# Is something listening on TCP port $port (IPv4 or IPv6)?  Reads /proc so
# that no connection is made (a probe connection would log in error.log).
sub _port_listening {
    my $port = shift;
    my $hex = sprintf '%04X', $port;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $f or next;
        while (<$in>) {
            return 1 if /^\s*\d+:\s+[0-9A-F]+:$hex\s+[0-9A-F]+:[0-9A-F]+\s+0A\s/;
        }
    }
    return 0;
}

# ---------------------------------------------------------------------------
# nginx lifecycle
# ---------------------------------------------------------------------------

sub _wait_gone {
    my ($pid, $secs, $reap) = @_;
    my $deadline = Time::HiRes::time() + $secs;
    while (Time::HiRes::time() < $deadline) {
        if ($reap) {
            my $r = waitpid($pid, POSIX::WNOHANG());
            return 1 if $r == $pid || $r == -1;
        }
        return 1 unless _is_running($pid);
        Time::HiRes::sleep(0.02);
    }
    return 0;
}

sub _stop_nginx {
    my ($name) = @_;
    $name //= '';

    if (defined $ChildPid) {
        my $pid = $ChildPid;
        undef $ChildPid;
        kill 'QUIT', $pid;
        my $grace = $UseValgrind ? 30 : $Timeout;
        unless (_wait_gone($pid, $grace, 1)) {
            warn "$name - nginx $pid did not exit on QUIT; killing it\n";
            kill 'KILL', -$pid;
            kill 'KILL', $pid;
            waitpid($pid, 0);
        }
        unlink $PidFile;
        return;
    }

    my $pid = _read_pid_file();
    return unless defined $pid;
    if (!_is_running($pid)) {
        unlink $PidFile;
        return;
    }
    kill($ENV{TEST_NGINX_FAST_SHUTDOWN} ? 'TERM' : 'QUIT', $pid);
    return if _wait_gone($pid, $Timeout, 0);
    kill 'TERM', $pid;
    return if _wait_gone($pid, 1, 0);
    warn "$name - nginx $pid did not exit; killing it with force\n";
    kill 'KILL', $pid;
    _wait_gone($pid, 1, 0);
    unlink $PidFile;
}

sub cleanup {
    return if $$ != $OwnerPid;
    $_->() for @CleanupHandlers;
    if (defined $ChildPid) {
        _stop_nginx('cleanup');
    }
}

sub setup_server_root {
    if (-d $ServRoot) {
        if ($ServRoot =~ m{/servroot(?:_\d+)?/?$}) {
            File::Path::remove_tree($ServRoot);
        } else {
            # somebody else's directory: only remove what we create in it
            File::Path::remove_tree($ConfDir, $LogDir, $HtmlDir, $CacheDir,
                                    glob("$ServRoot/*_temp"),
                                    glob("$ServRoot/*_cache"));
        }
    }
    for my $d ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $d;
        mkdir $d or bail_out("cannot create $d: $!");
    }
    open my $out, '>', "$HtmlDir/index.html"
        or bail_out("cannot write $HtmlDir/index.html: $!");
    print $out '<html><head><title>It works!</title></head>'
               . '<body>It works!</body></html>';
    close $out;
}

sub _write_user_files {
    my ($block) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless defined $files;

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+?))?\s*$/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - --- user_files must be a string or an ARRAY");
    }

    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        $body //= '';
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{^(.*)/[^/]+$} && !-d $1) {
            File::Path::make_path($1);
        }
        $body = expand_env_in_text($body, $name);
        open my $out, '>', $path or bail_out("$name - cannot write $path: $!");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            local $ENV{TZ} = 'GMT';
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - touch -t $date $path failed");
        }
    }
}

sub _write_config_file {
    my ($block, $config) = @_;
    my $name = $block->name;

    my $http_config = expand_env_in_text($block->http_config // '', $name);
    my $main_config = $block->main_config // '';
    if ($LoadModules) {
        my @mods = map { "load_module $_;" } grep { length } split /\s+/,
                   $LoadModules;
        $main_config = join("\n", @mods, $main_config);
    }
    $main_config = expand_env_in_text($main_config, $name);
    my $post_main_config = expand_env_in_text($block->post_main_config // '',
                                              $name);
    my $err_log = expand_env_in_text($block->error_log_file || $ErrLogFile,
                                     $name);
    my $server_name = $block->server_name // $ServerName;
    (my $quoted_server_name = $server_name) =~ s/(['\\])/\\$1/g;
    $config //= '';

    my @temp_paths;
    for my $t (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if $http_config =~ /\b${t}_temp_path\b/;
        push @temp_paths, "${t}_temp_path $ServRoot/${t}_temp;";
    }
    my $temp_paths = join "\n    ", @temp_paths;

    my $env = join '', map {
        my $v = $_;
        $v = "'$v'" if $v =~ /\s/;
        "env $v;\n";
    } @EnvToNginx;

    my $root_location = $NoRootLocation ? '' : <<"LOC";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
LOC

    my $user = $> == 0 ? "user root;\n" : '';

    open my $out, '>', $ConfFile or bail_out("cannot write $ConfFile: $!");
    print $out <<"CONF";
# generated by t/lib/Test/Nginx/Socket.pm for: $name
worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $err_log $LogLevel;
pid       $PidFile;
env ASAN_OPTIONS;
env LSAN_OPTIONS;
env UBSAN_OPTIONS;
env LD_PRELOAD;
env LD_LIBRARY_PATH;
$env
$main_config

http {
    access_log $AccLogFile;
    $temp_paths

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config

    server {
        listen          $ServerPort;
        server_name     '$quoted_server_name';
        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main_config

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
$user
CONF
    close $out;
}

sub _nginx_cmd {
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    # -e (the startup error log) exists since nginx 1.19.5
    push @cmd, '-e', $ErrLogFile if $NginxVersion && $NginxVersion >= 1.019005;
    return @cmd;
}

sub _valgrind_cmd {
    my @pre = ('valgrind', '-q', "--log-file=$ValgrindLog");
    if ($UseValgrind =~ /^\d+$/) {
        push @pre, qw(--tool=memcheck --leak-check=full --keep-debuginfo=yes
                      --show-possibly-lost=no --num-callers=100
                      --gen-suppressions=all);
        for my $supp ('t/valgrind.suppress', 'valgrind.suppress') {
            if (-f $supp) {
                push @pre, '--suppressions=' . File::Spec->rel2abs($supp);
                last;
            }
        }
    } else {
        push @pre, split ' ', $UseValgrind;
    }
    return @pre;
}

# Runs a command with stdout to /dev/null and stderr appended to $StderrFile.
# Returns the pid (no wait) or the wait status (wait).
sub _spawn {
    my ($cmd, $wait, $new_group) = @_;
    _warn("running: @$cmd\n");
    my $pid = fork();
    bail_out("fork failed: $!") unless defined $pid;
    if ($pid == 0) {
        setpgrp(0, 0) if $new_group;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', $StderrFile or open STDERR, '>', '/dev/null';
        { no warnings "exec"; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0] failed: $!\n";
        POSIX::_exit(127);
    }
    return $pid unless $wait;
    waitpid($pid, 0);
    return $?;
}

sub _stderr_from {
    my ($pos) = @_;
    open my $in, '<', $StderrFile or return [];
    seek $in, $pos, 0 if $pos;
    my @lines = <$in>;
    close $in;
    return \@lines;
}

sub _tail {
    my ($file, $n) = @_;
    open my $in, '<', $file or return '';
    my @l = <$in>;
    close $in;
    splice @l, 0, @l - $n if @l > $n;
    return join '', @l;
}

sub _start_nginx {
    my ($name) = @_;
    my @cmd = _nginx_cmd();

    if ($UseValgrind) {
        unlink $ValgrindLog;
        my $pid = _spawn([_valgrind_cmd(), @cmd], 0, 1);
        $ChildPid = $pid;
        my $deadline = Time::HiRes::time() + 60;
        while (Time::HiRes::time() < $deadline) {
            last if _port_listening($ServerPort);
            if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
                undef $ChildPid;
                bail_out("$name - nginx under valgrind exited at startup:\n"
                         . _tail($StderrFile, 20) . _tail($ErrLogFile, 20)
                         . _tail($ValgrindLog, 40));
            }
            Time::HiRes::sleep(0.05);
        }
        Time::HiRes::sleep($TestNginxSleep);
        return;
    }

    my $waited = 0;
    my $tries = 0;
    while (1) {
        my $status = _spawn(\@cmd, 1);
        last if $status == 0;
        $tries++;
        # the previous nginx may still hold the port for a moment
        my $delay = 0.1 * $tries;
        $delay = 1 if $delay > 1;
        if ($waited >= 10) {
            bail_out("$name - cannot start nginx (\"@cmd\", status $status):\n"
                     . _tail($StderrFile, 20) . _tail($ErrLogFile, 20));
        }
        Time::HiRes::sleep($delay);
        $waited += $delay;
    }
    Time::HiRes::sleep($TestNginxSleep);
}

# valgrind mode: nginx is stopped after each block and its valgrind report,
# if any, is a test failure.
sub _check_valgrind {
    my ($name) = @_;
    return unless -s $ValgrindLog;
    open my $in, '<', $ValgrindLog or return;
    my $report = do { local $/; <$in> };
    close $in;
    return unless $report =~ /\S/;
    Test::More::fail("$name - valgrind reported errors");
    Test::More::diag($report);
}

# ---------------------------------------------------------------------------
# Running one block
# ---------------------------------------------------------------------------

my %Unsupported = map { $_ => 1 } qw(
    tcp_listen tcp_reply tcp_query tcp_query_len udp_listen udp_reply
    udp_query stap stap_out stap_out_like stap_out_unlike curl http2
    http3 reload_fails response_body_json_sort quic_max_idle_timeout
    grep_error_log grep_error_log_out
);

sub _skip_decision {
    my ($block) = @_;
    my $name = $block->name;
    my ($n, $skip, $reason);

    if (defined(my $spec = $block->skip_eval)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)$/s
            or bail_out("$name - invalid --- skip_eval: $spec");
        $n = $1;
        my $code = $2;
        $reason = 'skip_eval';
        $skip = eval $code;
        bail_out("$name - skip_eval: $@") if $@;
    }

    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*?))?\s*$/
            or bail_out("$name - invalid --- skip_nginx: $spec");
        $n = $1;
        my $ver = sprintf "%d.%03d%03d", $3, $4, $5;
        my $op = $2;
        $reason = $6 || "nginx version $op $3.$4.$5";
        $skip = 1 if eval "$NginxVersion $op $ver";
    }

    my ($todo, $todo_reason);
    if (defined(my $spec = $block->todo)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)$/s
            or bail_out("$name - invalid --- todo: $spec");
        ($todo, $n, $todo_reason) = (1, $1, $2);
    }

    return ($skip, $n, $reason // 'various reasons', $todo, $todo_reason);
}

sub run_test {
    my ($block) = @_;
    return if defined $block->SKIP;

    my $name = $block->name;

    for my $sec (keys %Unsupported) {
        if (exists $block->{$sec}) {
            bail_out("$name - section --- $sec is not supported by "
                     . "the FlowScale Test::Nginx::Socket");
        }
    }

    $RandPorts = {};
    my $config = expand_env_in_text(scalar $block->config, $name);
    local $LogLevel = $block->log_level || $LogLevel;
    my $must_die = $block->must_die;
    local $UseValgrind = defined $must_die ? undef : $UseValgrind;
    local $DaemonEnabled = $UseValgrind ? 'off' : 'on';

    my ($should_skip, $n_skip, $skip_reason, $should_todo, $todo_reason)
        = _skip_decision($block);

    my $should_restart;
    if (!defined $config) {
        if (!$NoNginxManager && !defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and "
                     . "could not get previous one.");
        }
        $should_restart = 0;
    } elsif ($NoNginxManager) {
        $should_restart = 0;
    } else {
        $should_restart = !defined $PrevConfig || $config ne $PrevConfig
                          || $ForceRestartOnTest;
    }

    if ($should_restart && !$should_skip) {
        $PrevConfig = $config;

        _stop_nginx($name);
        _check_prev_block_shutdown_error_log();

        setup_server_root();
        if (defined(my $code = $block->post_setup_server_root)) {
            eval $code;
            bail_out("$name - post_setup_server_root failed: $@") if $@;
        }
        _write_user_files($block);
        _write_config_file($block, $config);
        $FirstTime = 0;

        if (defined $must_die) {
            _run_must_die($block, $must_die);
            return;
        }

        _start_nginx($name);
    }

    if (defined(my $init = $block->init)) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogFilePos = 0;
    for my $i (1 .. $RepeatEach) {
        _write_user_files($block) if $i > 1;

        if ($should_skip && defined $n_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $n_skip);
            }
        } elsif ($should_todo) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason", $n_skip);
            }
        } elsif (!$should_skip) {
            _run_requests($block, $i - 1);
        }
    }

    if ($UseValgrind && !$should_skip) {
        _stop_nginx($name);
        _check_valgrind($name);
        undef $PrevConfig;   # forces a fresh start for the next block
    }
}

sub _run_must_die {
    my ($block, $must_die) = @_;
    my $name = $block->name;
    my @cmd = _nginx_cmd();

    $ErrLogFilePos = 0;
    for my $i (0 .. $RepeatEach - 1) {
        my $stderr_pos = -s $StderrFile || 0;
        my $status = _spawn(\@cmd, 1);
        my $exit = $status >> 8;
        my $signal = $status & 127;
        my $core = $status & 128;

        if ($status == -1 || $exit == 127) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($core) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (Scalar::Util::looks_like_number($must_die)) {
            Test::More::is($exit, $must_die,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        # Like upstream, only logs/error.log is checked, where a line reads
        # "DATE [emerg] PID#TID: message" (stderr has "nginx: [emerg] message").
        # On a failure, show what nginx printed to help the test's author.
        my $failed = _check_error_log($block, undef, $i, 0);
        if ($failed) {
            Test::More::diag("nginx printed on stderr (error_log checks read "
                             . "logs/error.log only):\n"
                             . join '', @{ _stderr_from($stderr_pos) });
        }

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; "
                 . "killing it (req $i)\n";
            for (1 .. 15) {
                last if -f $PidFile;
                Time::HiRes::sleep($TestNginxSleep);
            }
            _stop_nginx($name);
        }
    }
    undef $PrevConfig;
}

# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------

sub _parse_more_headers {
    my ($text) = @_;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text // '') {
        next if $line =~ /^\s*#/;
        my ($k, $v) = split /:\s*/, $line, 2;
        next unless defined $k && length $k;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# Turns "METHOD [URI [VERSION]]\nbody" into a complete HTTP request.
# Returns the request text and, for re-splitting packets, the lengths of the
# original and the rewritten head (the part before the body).
sub _build_request {
    my ($name, $src, $more_headers, $chunked, $conn) = @_;

    $src //= '';
    my ($lead) = $src =~ /^(\s*)/;
    my $rest = substr $src, length $lead;
    my ($first, $body) = split /\n/, $rest, 2;
    bail_out("$name - Request line should be non-empty")
        unless defined $first && $first =~ /\S/;
    my $head_src_len = length($lead) + length($first)
                       + (defined $body ? 1 : 0);
    $body //= '';

    $first =~ s/\r$//;
    my ($meth, $uri, $ver) = split ' ', $first;
    $uri //= '/';
    $ver //= 'HTTP/1.1';

    my $len_header = '';
    if (!$chunked && $body ne '' && $more_headers !~ /(?:^|\n)Content-Length:/i) {
        my $trimmed = $body;
        $trimmed =~ s/^\s+|\s+$//g;
        # keep the offsets of the body's packets right
        my ($lead_ws) = $body =~ /^(\s*)/;
        $head_src_len += length $lead_ws;
        $body = $trimmed;
        $len_header = 'Content-Length: ' . length($body) . "\r\n";
    }

    my $headers = '';
    $headers .= "Host: $ServerName\r\n" if $more_headers !~ /(?:^|\n)Host:/i;
    $headers .= "Connection: $conn\r\n" if $more_headers !~ /(?:^|\n)Connection/i;
    $headers .= $more_headers . $len_header . "\r\n";

    my $head = "$meth $uri $ver\r\n$headers";
    return ($head . $body, $head_src_len, length $head);
}

sub _headers_for {
    my ($name, $more, $i) = @_;
    if (ref $more eq 'ARRAY') {
        my $h = $more->[$i];
        bail_out("$name - --- more_headers lacks data for request $i")
            unless defined $h;
        return _parse_more_headers($h);
    }
    return _parse_more_headers($more);
}

# Returns [ [ {value => ..., delay_before => ...}, ... ], ... ]:
# a list of requests, each a list of packets.
sub _requests_of {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        if (ref $raw eq 'ARRAY') {
            return [[ map { ref $_ ? {%$_} : { value => $_ } } @$raw ]];
        }
        return [[ { value => $raw } ]];
    }

    my $more = $block->more_headers // '';

    if (defined(my $reqs = $block->pipelined_requests)) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $src = expand_env_in_text($reqs->[$i], $name);
            my ($h, $c) = _headers_for($name, $more, $i);
            my ($req) = _build_request($name, $src, $h, $c,
                                       $i == $#$reqs ? 'close' : 'keep-alive');
            $all .= $req;
        }
        return [[ { value => $all } ]];
    }

    my $request = $block->request;
    bail_out("$name - request empty") unless defined $request;
    if (!ref $request) {
        1 while $request =~ s/^\s*#[^\n]+\s+|^\s+//s;
        $request = [$request];
    } elsif (ref $request ne 'ARRAY') {
        bail_out("$name - invalid --- request: must be a string or an ARRAY");
    }

    my @out;
    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($h, $c) = _headers_for($name, $more, $i);
        if (!ref $one) {
            my ($req) = _build_request($name, $one, $h, $c, 'close');
            push @out, [ { value => $req } ];
            next;
        }
        bail_out("$name - a request must be a string or an ARRAY of packets")
            unless ref $one eq 'ARRAY';

        # A request given as packets: build the whole request, then cut it
        # again where the packets were cut (offsets in the body are moved
        # by the headers added after the request line).
        my @pk = map { ref $_ eq 'HASH' ? {%$_} : { value => $_ } } @$one;
        my $src = join '', map { $_->{value} } @pk;
        my ($req, $src_head, $new_head) = _build_request($name, $src, $h, $c,
                                                         'close');
        my ($pos, $from) = (0, 0);
        for my $k (0 .. $#pk) {
            $pos += length $pk[$k]{value};
            my $to;
            if ($k == $#pk) {
                $to = length $req;
            } elsif ($pos <= $src_head) {
                $to = $pos < $new_head ? $pos : $new_head;
            } else {
                $to = $new_head + $pos - $src_head;
            }
            $to = length $req if $to > length $req;
            $to = $from if $to < $from;
            $pk[$k]{value} = substr $req, $from, $to - $from;
            $from = $to;
        }
        push @out, \@pk;
    }
    return \@out;
}

sub _connect {
    my ($name, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($UseValgrind ? 30 : 5);
    my $err;
    while (1) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $ServerAddr,
            PeerPort => $ServerPortForClient,
            Proto    => 'tcp',
            Timeout  => $timeout,
        );
        return $sock if $sock;
        $err = $!;
        last if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    Test::More::fail("$name - Can't connect to $ServerAddr:$ServerPortForClient:"
                     . " $err (aborted)\n");
    return undef;
}

# Sends one request (a list of packets) and reads until the server closes
# the connection.  Returns the raw response and whether it was a HEAD.
sub _send_request {
    my ($block, $packets, $middle_delay, $timeout) = @_;
    my $name = $block->name;
    my $is_head = (join '', map { $_->{value} } @$packets) =~ /^\s*HEAD\s/;

    my $sock = _connect($name, $timeout) or return (undef, $is_head);
    local $SIG{PIPE} = 'IGNORE';
    my $flags = fcntl($sock, F_GETFL, 0);
    fcntl($sock, F_SETFL, $flags | O_NONBLOCK);

    my $sel = IO::Select->new($sock);
    my $resp = '';
    my $eof = 0;
    my $timed_out = 0;

    my $read_some = sub {
        while (1) {
            my $n = sysread($sock, my $buf, 65536);
            if (!defined $n) {
                return 1 if $! == Errno::EAGAIN() || $! == Errno::EINTR();
                warn "WARNING: $name - HTTP response read failure: $!\n"
                    unless $! == Errno::ECONNRESET();
                $eof = 1;
                return 0;
            }
            if ($n == 0) {
                $eof = 1;
                return 0;
            }
            $resp .= $buf;
        }
    };

    my $first = 1;
  PACKET:
    for my $p (@$packets) {
        my $delay = $p->{delay_before} // ($first ? undef : $middle_delay);
        $first = 0;
        Time::HiRes::sleep($delay) if $delay;
        my $data = $p->{value} // '';
        my $off = 0;
        while ($off < length $data) {
            my ($r, $w) = IO::Select->select($sel, $sel, undef, $timeout);
            if (!$r && !$w) {
                $timed_out = 1;
                last PACKET;
            }
            if ($r && @$r) {
                last PACKET unless $read_some->();
            }
            if ($w && @$w) {
                my $n = syswrite($sock, $data, length($data) - $off, $off);
                if (!defined $n) {
                    next if $! == Errno::EAGAIN() || $! == Errno::EINTR();
                    last PACKET;   # the server closed early: read what it said
                }
                $off += $n;
            }
        }
    }

    if (!$timed_out && !$eof && defined(my $how = $block->shutdown)) {
        $how = 1 if $how eq '';
        shutdown($sock, $how);
    }

    while (!$timed_out && !$eof) {
        my @r = $sel->can_read($timeout);
        if (!@r) {
            $timed_out = 1;
            last;
        }
        $read_some->();
    }
    close $sock;

    if ($timed_out && !defined $block->abort) {
        Test::More::fail("ERROR: client socket timed out - $name\n");
    }
    return ($resp, $is_head);
}

# Returns (HTTP::Response or undef, raw header text, bytes left over).
sub _parse_response {
    my ($name, $raw, $is_head) = @_;

    my $raw_headers = '';
    $raw_headers = $1 if $raw =~ /\A(.*?\r\n)\r\n/s;

    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    if (defined $code && $code !~ /^\d+$/) {
        $res->code(undef);
        $code = undef;
    }
    return ($res, $raw_headers, undef)
        if $code && ($code == 304 || $code == 101 || $code == 204 || $is_head);

    my $left;
    my $te = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');

    if (defined $te && $te eq 'chunked') {
        my $data = $res->content // '';
        my $body = '';
        my $pos = 0;
        while (1) {
            pos($data) = $pos;
            if ($data =~ /\G[ \t]*([0-9A-Fa-f]+)[^\r\n]*\r\n/gc) {
                my $size = hex $1;
                $pos = pos($data);
                if ($size == 0) {
                    # trailers, then an empty line
                    while ($data =~ /\G([^\r\n]+)\r\n/gc) { }
                    if ($data =~ /\G\r\n/gc) {
                        $pos = pos($data);
                        $left = substr $data, $pos if $pos < length $data;
                    } else {
                        Test::More::fail("$name - invalid chunked data "
                                         . "received (expected CRLF).");
                        return ($res, $raw_headers, undef);
                    }
                    last;
                }
                if (length($data) - $pos < $size + 2
                    || substr($data, $pos + $size, 2) ne "\r\n")
                {
                    Test::More::fail("$name - invalid chunked data received"
                                     . " (truncated chunk)");
                    return ($res, $raw_headers, undef);
                }
                $body .= substr $data, $pos, $size;
                $pos += $size + 2;
            } elsif ($pos < length $data) {
                Test::More::fail("$name - invalid chunked body received: "
                                 . _fmt_str(substr $data, $pos, 60));
                return ($res, $raw_headers, undef);
            } else {
                Test::More::fail("$name - no last chunk found - "
                                 . _fmt_str($data));
                return ($res, $raw_headers, undef);
            }
        }
        $res->content($body);
    } elsif (defined $len && $len =~ /^\d+$/) {
        my $content = $res->content // '';
        if (length $content < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($content) . "\n";
        } elsif (length $content > $len) {
            $left = substr $content, $len;
            $res->content(substr $content, 0, $len);
        }
    }
    return ($res, $raw_headers, $left);
}

sub _indexed {
    my ($name, $value, $idx, $need_array) = @_;
    if (ref $value eq 'ARRAY') {
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and no array needed")
            if !$need_array && $idx != 0;
        return $value->[$idx];
    }
    if ($need_array) {
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    return $value;
}

sub _run_requests {
    my ($block, $repeated) = @_;
    my $name = $block->name;

    my $reqs = _requests_of($block);
    bail_out("$name - request empty") unless @$reqs;

    my $timeout = parse_time($block->timeout) // $Timeout;
    my $pipelined = $block->pipelined_requests;
    my $need_array = $pipelined ? 1 : @$reqs > 1;
    my $n_resp = $pipelined ? scalar @$pipelined : 1;
    my $idx = 0;

    for my $r (0 .. $#$reqs) {
        my ($raw, $is_head) = _send_request($block, $reqs->[$r],
                                            scalar $block->raw_request_middle_delay,
                                            $timeout);
        $raw //= '';
        for my $k (1 .. $n_resp) {
            my $res;
            if (!defined $block->ignore_response) {
                my ($raw_headers, $left);
                ($res, $raw_headers, $left) = _parse_response($name, $raw,
                                                              $is_head);
                if ($k < $n_resp) {
                    $raw = $left // '';
                } elsif (defined $left && length $left) {
                    warn "WARNING: $name - unexpected extra bytes after last "
                         . "chunk in response: \"" . _fmt_str($left) . "\"\n";
                }
                _check_error_code($block, $res, $idx, $need_array);
                _check_raw_headers($block, $raw_headers, $idx, $need_array);
                _check_headers($block, $res, $raw_headers, $idx, $need_array);
                _filter_body($block, $res, $idx);
                _check_body($block, $res, $idx, $repeated, $need_array);
            }

            my $last = $k == $n_resp && $r == $#$reqs;
            if (!$last) {
                Time::HiRes::sleep(scalar $block->wait) if $block->wait;
                _check_error_log($block, $res, $repeated, $need_array);
                _check_access_log($block, $repeated)
                    unless defined $block->ignore_response;
            }
            $idx++;
        }
    }

    Time::HiRes::sleep(scalar $block->wait) if $block->wait;
    _check_error_log($block, undef, $repeated, $need_array);
    _check_access_log($block, $repeated) unless defined $block->ignore_response;
}

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

sub _check_error_code {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $pat = _indexed($name, scalar $block->error_code_like, $idx, $need_array);
        Test::More::like($got, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($got,
                       _indexed($name, scalar $block->error_code, $idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($got, 200, "$name - status code ok");
    }
}

sub _check_raw_headers {
    my ($block, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->raw_response_headers_like) {
        my $pat = _indexed($name, scalar $block->raw_response_headers_like, $idx,
                           $need_array);
        Test::More::like($raw_headers, qr/$pat/s,
                         "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = _indexed($name, scalar $block->raw_response_headers_unlike, $idx,
                           $need_array);
        Test::More::unlike($raw_headers, qr/$pat/s,
                           "$name - raw resp headers unlike");
    }
}

# "Name: value" per line; "!Name" means the header must be absent.
sub _parse_header_spec {
    my ($text) = @_;
    my @out;
    for my $line (split /\n/, $text // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            push @out, [$line, undef];
        } else {
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            push @out, [$k, $v];
        }
    }
    return @out;
}

sub _check_headers {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;

    if (defined $block->response_headers) {
        for my $h (_parse_header_spec(_indexed($name, scalar $block->response_headers,
                                               $idx, $need_array)))
        {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                    "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            my $got = $res ? $res->header($key) : undef;
            Test::More::is($got // '', $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        for my $h (_parse_header_spec(_indexed($name,
                                               scalar $block->response_headers_like,
                                               $idx, $need_array)))
        {
            my ($key, $val) = @$h;
            my $got = $res ? $res->header($key) : undef;
            Test::More::like($got // '', qr/^$val$/,
                             "$name - header $key like ok");
        }
    }
}

sub _filter_body {
    my ($block, $res, $idx) = @_;
    my $filters = $block->response_body_filters;
    return unless defined $filters && $res && defined $res->content;
    my $name = $block->name;
    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (@$filters && ref $filters->[0] eq 'ARRAY') {
        $filters = $filters->[$idx]
            or bail_out("$name - no response_body_filters for request $idx");
    }
    my $body = $res->content;
    for my $f (@$filters) {
        if (ref $f eq 'CODE') {
            $body = $f->($body);
        } elsif ($f eq 'uc') {
            $body = uc $body;
        } elsif ($f eq 'lc') {
            $body = lc $body;
        } else {
            bail_out("$name - unknown response_body_filters filter \"$f\"");
        }
    }
    $res->content($body);
}

sub _check_body {
    my ($block, $res, $idx, $repeated, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;

    if (defined $block->response_body) {
        my $expected = _indexed($name, scalar $block->response_body, $idx,
                                $need_array);
        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected = expand_env_in_text($expected, $name);
        }
        if (ref $expected) {
            Test::More::like($content, $expected,
                "$name - response_body - like (repeated req $repeated, "
                . "req $idx)");
        } else {
            _is_string($content, $expected,
                "$name - response_body - response is expected "
                . "(repeated req $repeated, req $idx)");
        }
    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $like = defined $block->response_body_like;
        my $pat = _indexed($name, $like ? scalar $block->response_body_like
                                        : scalar $block->response_body_unlike,
                           $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $type = $like ? 'like' : 'unlike';
        my $desc = "$name - response_body_$type - response is expected ("
                   . _trim_summary($content) . ")";
        if ($like) {
            Test::More::like($content, qr/$pat/s, $desc);
        } else {
            Test::More::unlike($content, qr/$pat/s, $desc);
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $content, $idx, $repeated, 0);
    }
}

sub _log_lines {
    my ($file, $pos_ref) = @_;
    Time::HiRes::sleep($TestNginxSleep * 3);
    open my $in, '<', $file or return [];
    seek $in, $$pos_ref, 0 if $pos_ref && !$CheckAccumErrLog && $$pos_ref;
    my @lines = <$in>;
    $$pos_ref = tell $in if $pos_ref && !$CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub _patterns {
    my ($pats) = @_;
    if (!ref $pats) {
        chomp $pats;
        return [ split /\n+/, $pats ];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [ @$pats ];
}

sub _matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _contains {
    my ($pats, $s) = @_;
    return 0 unless defined $pats;
    return grep { index("$_", $s) >= 0 } @{ _patterns($pats) };
}

# error_log: every pattern must match some line; no_error_log: none may.
# Each pattern is one test.
sub _check_log_patterns {
    my ($name, $lines, $want, $forbid, $what, $suffix) = @_;
    my $failed = 0;

    if (defined $want) {
        my $pats = _patterns($want);
        for my $pat (@$pats) {
            my $found = grep { _matches($_, $pat) } @$lines;
            if ($found) {
                Test::More::pass("$name - pattern \"$pat\" matches a line in "
                                 . "$what$suffix");
            } else {
                Test::More::fail("$name - pattern \"$pat\" should match a line "
                                 . "in $what$suffix");
                $failed++;
            }
        }
    }

    if (defined $forbid) {
        my $pats = _patterns($forbid);
        for my $pat (@$pats) {
            my $p = _fmt_str("$pat");
            my @hits = grep { _matches($lines->[$_], $pat) } 0 .. $#$lines;
            if (!@hits) {
                Test::More::pass("$name - pattern \"$p\" does not match a line "
                                 . "in $what$suffix");
                next;
            }
            $failed++;
            my $i = $hits[0];
            my $end = $i + 10 < $#$lines ? $i + 10 : $#$lines;
            Test::More::fail("$name - pattern \"$p\" should not match any line"
                             . " in $what but matches line \""
                             . _fmt_str($lines->[$i]) . "\"$suffix\n"
                             . join '', @$lines[$i + 1 .. $end]);
        }
    }
    return $failed;
}

sub _check_error_log {
    my ($block, $res, $repeated, $need_array) = @_;
    my $name = $block->name;
    my $lines = _log_lines($ErrLogFile, \$ErrLogFilePos);

    my $failed = _check_log_patterns($name, $lines, scalar $block->error_log,
                        scalar $block->no_error_log,
                        'error.log', " (req $repeated)");

    my @expected = (scalar $block->error_log, scalar $block->no_error_log);
    for my $level (qw(alert crit emerg)) {
        next if grep { _contains($_, "[$level") } @expected;
        for my $line (@$lines) {
            warn "WARNING: $name - " . _fmt_str($line) . "\n"
                if $line =~ /\[$level\]/;
        }
    }

    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            chomp(my $l = $line);
            Test::More::fail("$name - $l\n");
            $failed++;
        }
    }
    return $failed;
}

sub _check_access_log {
    my ($block, $repeated) = @_;
    return unless defined $block->access_log || defined $block->no_access_log;
    my $lines = _log_lines($AccLogFile, undef);
    _check_log_patterns($block->name, $lines, scalar $block->access_log,
                        scalar $block->no_access_log, 'access.log',
                        " (req $repeated)");
}

# shutdown_error_log / no_shutdown_error_log of the previous block, checked
# once that block's nginx has been stopped.
sub _check_prev_block_shutdown_error_log {
    my $block = $PrevBlock;
    return unless defined $block;
    undef $PrevBlock;
    return unless defined $block->shutdown_error_log
                  || defined $block->no_shutdown_error_log;
    return if $ENV{TEST_NGINX_NO_CLEAN};
    my $lines = _log_lines($ErrLogFile, \$ErrLogFilePos);
    _check_log_patterns($block->name, $lines,
                        scalar $block->shutdown_error_log,
                        scalar $block->no_shutdown_error_log, 'error.log', '');
}

END {
    if ($$ == $OwnerPid) {
        local $?;
        cleanup();
        if ($UseValgrind || !$ENV{TEST_NGINX_NO_CLEAN}) {
            _stop_nginx('END');
        }
        _check_prev_block_shutdown_error_log();
        if ($Randomize && -d $ServRoot && $ServRoot =~ m{/t/servroot_\d+$}) {
            File::Path::remove_tree($ServRoot);
        }
    }
}

1;

__END__

=head1 NAME

Test::Nginx::Socket - FlowScale's own implementation of the Test::Nginx::Socket
test interface

=head1 SYNOPSIS

    use Test::Nginx::Socket 'no_plan';

    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location = /t { return 200 "hello\n"; }
    --- request
    GET /t
    --- response_body
    hello
    --- no_error_log
    [error]

Run with C<prove -It/lib -r t>.  The same files run under the upstream
Test::Nginx with C<prove -I/path/to/test-nginx/lib -It/lib -r t>.

=head1 DESCRIPTION

Each block of the C<__DATA__> section is a test case.  For each block the
module writes C<t/servroot/conf/nginx.conf> (fresh C<t/servroot> with
C<conf/>, C<logs/>, C<html/>), starts nginx from C<TEST_NGINX_BINARY> (default:
C<nginx> on C<PATH>, else F</usr/sbin/nginx>) with C<-p t/servroot/>, sends the
request(s) over a plain TCP socket, and checks the response and the part of
F<logs/error.log> written during the block.  Results are TAP through
Test::More, with the same test names as the upstream module
("t/foo.t TEST 1: hello - status code ok"), so explicit plans computed for the
upstream module are right here too.  Blocks run in random order unless
C<no_shuffle()> is called or C<TEST_NGINX_NO_SHUFFLE> is set.

The generated configuration has C<daemon on>, C<master_process off> (unless
C<master_on()> or C<TEST_NGINX_MASTER_PROCESS=on>), C<worker_processes 1>,
C<error_log logs/error.log debug>, C<user root> when run as root, an
C<events> block with 64 connections, and an C<http> block with the access log,
temp paths inside the server root, C<default_type text/plain>,
C<--- http_config>, and one C<server> listening on C<TEST_NGINX_SERVER_PORT>
with C<server_name localhost>, C<client_max_body_size 30M>, C<--- config> and a
C<location /> serving F<html/> (unless C<no_root_location()>).  Modules named in
C<TEST_NGINX_LOAD_MODULES> are loaded with C<load_module> first.

=head2 Functions

run_tests, repeat_each, no_shuffle, no_long_string, log_level, master_on,
master_off, master_process_enabled, workers, worker_connections,
env_to_nginx, add_block_preprocessor, config_preamble, no_root_location,
server_name, server_addr, server_root, html_dir, server_port,
server_port_for_client, timeout, no_nginx_manager, check_accum_error_log,
bail_out, add_cleanup_handler, add_test_cleanup_handler,
add_response_body_check, is_str; plus everything Test::Base exports (plan,
blocks, is, like, ...).

=head2 Sections

main_config, post_main_config, http_config, config, server_name,
error_log_file, log_level, user_files, post_setup_server_root, init, request
(string, or an array of requests each a string or an array of packets, a
packet being a string or C<{ value =E<gt> ..., delay_before =E<gt> SECS }>),
raw_request (string or array of packets), raw_request_middle_delay,
pipelined_requests, more_headers (string or array), timeout (C<1.5>, C<50ms>),
abort, shutdown, wait, ignore_response, error_code, error_code_like,
response_headers (C<Name: value>, C<!Name> for absent), response_headers_like,
raw_response_headers_like, raw_response_headers_unlike, response_body (string
or, through C<eval>, a C<qr//>), response_body_like, response_body_unlike,
response_body_filters (uc, lc, code refs), error_log, no_error_log,
access_log, no_access_log, shutdown_error_log, no_shutdown_error_log
(each a string per line, or through C<eval> a C<qr//> or an array of
strings and regexps), must_die (empty, or the expected exit code),
skip_eval, skip_nginx, todo, and Test::Base's ONLY, SKIP and LAST markers and
filters (C<eval>, C<chomp>, ...).

C<$TEST_NGINX_NAME> is replaced by C<$ENV{TEST_NGINX_NAME}> (a missing variable
aborts the run) where the upstream module does it: main_config,
post_main_config, http_config, config, error_log_file, user_files,
pipelined_requests and response_body.  C<$TEST_NGINX_RAND_PORT_N> is a free
port, the same within a block.  Not in request or more_headers: use
C<--- request eval> and C<$ENV{...}> there.  C<TEST_NGINX_SERVER_PORT> and
C<TEST_NGINX_SERVER_ROOT> are set by the module.

For C<--- must_die> nginx is started with the block's configuration and the
block passes if nginx fails to start (with the given exit code, if any);
C<error_log> and C<no_error_log> then apply to F<logs/error.log> only, as
upstream (there a line reads C<DATE [emerg] PID#TID: message>, while stderr
has C<nginx: [emerg] message>); what nginx printed on stderr is shown as a
diagnostic when such a check fails.

=head2 Environment

TEST_NGINX_BINARY, TEST_NGINX_SERVER_PORT (or TEST_NGINX_PORT; default: a free
port), TEST_NGINX_CLIENT_PORT, TEST_NGINX_SERVROOT, TEST_NGINX_RANDOMIZE
(server root C<t/servroot_PORT>, removed at the end), TEST_NGINX_LOAD_MODULES,
TEST_NGINX_LOG_LEVEL, TEST_NGINX_MASTER_PROCESS, TEST_NGINX_TIMEOUT,
TEST_NGINX_SLEEP, TEST_NGINX_NO_SHUFFLE, TEST_NGINX_NO_CLEAN (leave the last
nginx running), TEST_NGINX_FAST_SHUTDOWN, TEST_NGINX_CHECK_ACCUM_ERR_LOG,
TEST_NGINX_FORCE_RESTART_ON_TEST, TEST_NGINX_VERBOSE, and
TEST_NGINX_USE_VALGRIND: nginx runs in the foreground under valgrind memcheck
(with F<t/valgrind.suppress> or F<valgrind.suppress> when present; a value
that is not a number replaces the default valgrind options), is stopped after
each block, and a non-empty valgrind report fails the block.

=head1 NOT SUPPORTED

HUP reloads (use_hup), HTTP/2 and HTTP/3, curl, the embedded TCP and UDP
servers (tcp_listen, udp_listen...), systemtap, grep_error_log, check-leak and
benchmark modes.  A block using one of these sections aborts the run.

=cut
