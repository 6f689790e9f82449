package Test::Nginx::Util;

# Core-Perl-only re-implementation of the parts of openresty/test-nginx's
# Test::Nginx::Util (and of Test::Base's block parsing) that this project's
# t/ suite uses.  Test files written against it are meant to also run under
# the real Test::Nginx::Socket.  See t/README.md.

use strict;
use warnings;

use Carp qw(croak);
use File::Spec ();
use File::Path qw(make_path remove_tree);
use IO::Socket::INET ();
use List::Util qw(shuffle);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Test::More ();

use Exporter 'import';

our @EXPORT = qw(
    env_to_nginx repeat_each worker_connections workers master_on master_off
    master_process_enabled log_level no_shuffle no_long_string no_root_location
    config_preamble server_name server_addr server_root html_dir server_port
    server_port_for_client timeout check_accum_error_log add_block_preprocessor
    bail_out add_cleanup_handler add_test_cleanup_handler no_nginx_manager use_hup
    is_str expand_env_in_text blocks
);

# ---------------------------------------------------------------------------
# settings (names follow Test::Nginx::Util where one exists)
# ---------------------------------------------------------------------------

our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || 'nginx';
# TEST_NGINX_WORKERS is ours (CI runs the suite a second time with master_process on and two
# workers); a file's workers() call still wins.
our $Workers              = $ENV{TEST_NGINX_WORKERS} || 1;
our $WorkerConnections    = 64;
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = defined $ENV{TEST_NGINX_MASTER_PROCESS}
    ? ($ENV{TEST_NGINX_MASTER_PROCESS} =~ /^(?:on|1|yes|true)$/i ? 'on' : 'off')
    : 'off';    # the real Test::Nginx's default
our $RepeatEach           = 1;
our $NoShuffle            = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoLongString         = 0;
our $NoRootLocation       = 0;
our $Timeout              = $ENV{TEST_NGINX_TIMEOUT} || 5;
our $StartTimeout         = $ENV{TEST_NGINX_START_TIMEOUT} || 30;
our $QuitTimeout          = $ENV{TEST_NGINX_QUIT_TIMEOUT} || 3;
our $TestNginxSleep       = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $ServerName           = 'localhost';
our $ServerAddr           = '127.0.0.1';
our $ConfigPreamble       = '';
our $Verbose              = $ENV{TEST_NGINX_VERBOSE};
our $NoClean              = $ENV{TEST_NGINX_NO_CLEAN};
our $NoConfigTest         = $ENV{TEST_NGINX_NO_CONFIG_TEST};
our $CheckAccumErrLog     = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $LoadModules          = $ENV{TEST_NGINX_LOAD_MODULES};
our $WorkerUser           = $ENV{TEST_NGINX_WORKER_USER};
our $FixedPort            = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT};
our $ServerPort           = $FixedPort;     # picked per block unless fixed
our $ServerPortForClient;                   # = $ServerPort unless set
# stream {} server of --- stream_server_config (as Test::Nginx::Socket::Lua::Stream, which
# defaults to $ServerPort + 1; we pick a free port per block unless TEST_NGINX_STREAM_PORT is set)
our $FixedStreamPort      = $ENV{TEST_NGINX_STREAM_PORT};
our $StreamPort           = $FixedStreamPort;
our $StreamServer         = 0;              # the last nginx.conf has the stream server
our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;
our @TestCleanupHandlers;
our $RandPorts = {};

our $ServRoot = $ENV{TEST_NGINX_SERVROOT}
    || File::Spec->rel2abs($ENV{TEST_NGINX_RANDOMIZE} ? "t/servroot_$$" : 't/servroot');
$ServRoot =~ s{/+$}{};
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";
our $Marker     = "$ServRoot/.test-nginx-servroot";

$ENV{TEST_NGINX_SERVROOT}    = $ServRoot;
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_HTML_DIR}    = $HtmlDir;

our $ErrLogFilePos = 0;
our $NginxPid;           # master (or single) process of the running nginx
our $NginxVersion;       # canonical number, e.g. 1022001
our $NginxRawVersion;    # "1.22.1"
our $NginxV = '';        # output of nginx -V
our $MainPid = $$;

# ---------------------------------------------------------------------------
# exported setters
# ---------------------------------------------------------------------------

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub repeat_each (@)        { $RepeatEach = shift if @_; $RepeatEach }
sub worker_connections (@) { $WorkerConnections = shift if @_; $WorkerConnections }
sub workers (@)            { $Workers = shift if @_; $Workers }
sub log_level (@)          { $LogLevel = shift if @_; $LogLevel }
sub master_on ()           { $MasterProcessEnabled = 'on' }
sub master_off ()          { $MasterProcessEnabled = 'off' }
sub master_process_enabled (@) {
    $MasterProcessEnabled = (shift() ? 'on' : 'off') if @_;
    $MasterProcessEnabled;
}
sub no_shuffle ()          { $NoShuffle = 1 }
sub no_long_string ()      { $NoLongString = 1 }
sub no_root_location ()    { $NoRootLocation = 1 }
sub config_preamble ($)    { $ConfigPreamble = shift }
sub server_name (@)        { $ServerName = shift if @_; $ServerName }
sub server_addr (@)        { $ServerAddr = shift if @_; $ServerAddr }
sub server_root ()         { $ServRoot }
sub html_dir ()            { $HtmlDir }
sub server_port (@)        { if (@_) { $ServerPort = $FixedPort = shift } $ServerPort }
sub server_port_for_client (@) {
    $ServerPortForClient = shift if @_;
    $ServerPortForClient // $ServerPort;
}
sub timeout (@)            { $Timeout = shift if @_; $Timeout }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)      { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }
sub no_nginx_manager ()    { warn "no_nginx_manager() is not supported by this runner; ignored\n" }
sub use_hup ()             { warn "use_hup() is not supported by this runner; ignored\n" }

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    return Test::More::is($got, $expected, $desc);
}

sub bail_out (@) {
    stop_nginx();
    Test::More::BAIL_OUT(join '', @_);
}

# ---------------------------------------------------------------------------
# block objects (Test::Base::Block compatible accessors)
# ---------------------------------------------------------------------------

package Test::Nginx::Util::Block {
    our $AUTOLOAD;

    sub new { bless {}, shift }

    sub set_value {
        my ($self, $key, @values) = @_;
        $self->{$key} = [@values];
        return;
    }

    sub seq_num     { my $self = shift; $self->{_seq_num} = shift if @_; $self->{_seq_num} }
    sub is_filtered { my $self = shift; $self->{_is_filtered} = shift if @_; $self->{_is_filtered} }
    sub original_values { $_[0]{_original_values} ||= {} }

    sub AUTOLOAD {
        my $self = shift;
        (my $key = $AUTOLOAD) =~ s/.*:://;
        return if $key eq 'DESTROY';
        Carp::croak("Not allowed to set values for '$key'") if @_;
        my $v = ref $self ? $self->{$key} : undef;
        return unless $v;
        return wantarray ? @$v : $v->[0];
    }

    sub DESTROY { }
}

# ---------------------------------------------------------------------------
# spec parsing (Test::Base semantics: === blocks, --- sections, filters)
# ---------------------------------------------------------------------------

our $BlockList;
our $FilterArguments;

sub _read_spec () {
    my $spec;
    {
        no warnings 'once';
        if (defined fileno(*main::DATA)) {
            local $/;
            $spec = readline(*main::DATA);
        }
    }
    if (!defined $spec || $spec !~ /\S/) {
        # DATA was not available (already read, or not opened): re-read $0
        if (open my $in, '<', $0) {
            local $/;
            my $src = <$in>;
            close $in;
            $spec = $1 if $src =~ /^__(?:DATA|END)__\r?\n(.*)\z/ms;
        }
    }
    return $spec // '';
}

sub _make_block ($) {
    my $hunk = shift;
    my $block = Test::Nginx::Util::Block->new;
    $hunk =~ s/\A===[ \t]*(.*)\s+// or die "bad block: $hunk";
    my $name = $1;
    my @parts = split /^--- +\(?(\w+)\)? *(.*)?\n/m, $hunk;
    my $description = shift @parts;
    $description = '' unless defined $description;
    $description = $name unless $description =~ /\S/;
    $description =~ s/\s*\z//;
    $block->set_value(description => $description);

    my (%map, @order);
    while (@parts) {
        my ($type, $filters, $value) = splice(@parts, 0, 3);
        croak "'$type' is a reserved section name (in block '$name')\n"
            if $type =~ /^_/;
        $value   = '' unless defined $value;
        $filters = '' unless defined $filters;
        if ($filters =~ /:(\s|\z)/) {
            croak "Extra lines not allowed in '$type' section (block '$name')"
                if $value =~ /\S/;
            ($filters, $value) = split /\s*:(?:\s+|\z)/, $filters, 2;
            $value = '' unless defined $value;
            $value =~ s/^\s*(.*?)\s*$/$1/;
        }
        $map{$type} = $filters;
        push @order, $type;
        $block->set_value($type, $value);
    }
    $block->set_value(name => $name);
    $block->{_section_map}   = \%map;
    $block->{_section_order} = \@order;
    return $block;
}

sub _block_list () {
    return $BlockList if $BlockList;
    my $spec = _read_spec();
    my @hunks = ($spec =~ /^(===.*?(?=^===|\z))/msg);
    my @blocks;
    for my $hunk (@hunks) {
        my $block = _make_block($hunk);
        if (exists $block->{ONLY}) {
            Test::More::diag("NOTE: found --- ONLY in '" . $block->name
                             . "': running that block only");
            @blocks = ($block);
            last;
        }
        next if exists $block->{SKIP};
        push @blocks, $block;
        last if exists $block->{LAST};
    }
    my $seq = 1;
    $_->seq_num($seq++) for @blocks;
    $BlockList = \@blocks;
    for my $block (@blocks) {
        _run_filters($block);
    }
    return $BlockList;
}

sub blocks (;$) {
    my $section = shift;
    my @blocks = @{ _block_list() };
    @blocks = grep { exists $_->{$section} } @blocks if $section;
    return wantarray ? @blocks : scalar @blocks;
}

my %Builtin = (
    norm => sub {
        my $t = shift // '';
        $t =~ s/\015\012/\n/g;
        $t =~ s/\r/\n/g;
        return $t;
    },
    trim => sub {
        map { my $v = $_; if (defined $v && !ref $v) {
            $v =~ s/\A([ \t]*\n)+//; $v =~ s/(?<=\n)\s*\z//g } $v } @_;
    },
    chomp   => sub { map { my $v = $_; chomp $v if defined $v && !ref $v; $v } @_ },
    chop    => sub { map { my $v = $_; chop $v if defined $v && !ref $v; $v } @_ },
    unchomp => sub { map { $_ . "\n" } @_ },
    lines   => sub { my $t = shift; return () unless length $t; ($t =~ /^(.*\n?)/gm) },
    array   => sub { [@_] },
    hash    => sub { +{@_} },
    join    => sub { join($FilterArguments // '', @_) },
    split   => sub {
        my $sep = $FilterArguments;
        if (defined $sep and $sep =~ s{^/(.*)/$}{$1}) { $sep = qr{$sep} }
        $sep = qr/\s+/ unless $sep;
        split $sep, shift;
    },
    reverse => sub { reverse @_ },
    sort    => sub { sort @_ },
    head    => sub { my $n = $FilterArguments || 1; splice(@_, 0, $n) },
    tail    => sub { my $n = $FilterArguments || 1; splice(@_, @_ - $n, $n) },
    append  => sub { my $s = $FilterArguments // ''; map { $_ . $s } @_ },
    prepend => sub { my $s = $FilterArguments // ''; map { $s . $_ } @_ },
    escape  => sub { my $t = shift; $t =~ s/(\\.)/eval "qq{$1}"/ge; $t },
    base64_decode => sub { require MIME::Base64; MIME::Base64::decode_base64(shift) },
    base64_encode => sub { require MIME::Base64; MIME::Base64::encode_base64(shift) },
    regexp  => sub {
        my $t = shift;
        my $flags = $FilterArguments;
        if ($t =~ /\n.*?\n/s) { $flags = 'xism' unless defined $flags }
        else { chomp $t }
        $flags ||= '';
        my $re = eval "qr{$t}$flags";
        die $@ if $@;
        $re;
    },
    strict  => sub { "use strict;\nuse warnings;\n" . shift },
);

sub _eval_section {
    my ($code, $block, $type) = @_;
    my @ret = do {
        package main;
        no strict;
        eval $code;
    };
    if ($@) {
        die "Test::Nginx: " . ($block->name // '?')
            . " - failed to eval the --- $type section: $@";
    }
    return @ret;
}

sub _run_filters ($) {
    my $block = shift;
    return if $block->is_filtered;
    for my $type (@{ $block->{_section_order} }) {
        my $string = $block->{_section_map}{$type} // '';
        my @filters;
        my @append;
        for my $filter_spec ('norm', 'trim', split(/\s+/, $string)) {
            my $f = $filter_spec;
            next unless length $f;
            if ($f =~ s/^-//) {
                @filters = grep { $_ ne $f } @filters;
            } elsif ($f =~ s/^\+//) {
                push @append, $f;
            } else {
                push @filters, $f;
            }
        }
        my @value = $block->$type;
        $block->original_values->{$type} = $value[0];
        for my $filter (@filters, @append) {
            local $FilterArguments = $filter =~ s/=(.*)$// ? $1 : undef;
            no strict 'refs';
            if ($filter eq 'eval') {
                @value = _eval_section(join('', @value), $block, $type);
            } elsif (defined &{"main::$filter"}) {
                local $_ = join '', map { $_ // '' } @value;
                my $orig = $_;
                @value = &{"main::$filter"}(@value);
                if (!@value or @value == 1 && defined $value[0]
                    && !ref $value[0] && $value[0] =~ /\A(\d+|)\z/)
                {
                    @value = ($_ // $orig);
                }
            } elsif (my $code = $Builtin{$filter}) {
                @value = $code->(@value);
            } else {
                die "Test::Nginx: " . $block->name
                    . " - unknown filter '$filter' in section '$type'\n";
            }
        }
        $block->set_value($type, @value);
    }
    $block->is_filtered(1);
}

# ---------------------------------------------------------------------------
# environment variable expansion (exactly like Test::Nginx)
# ---------------------------------------------------------------------------

sub expand_env_in_text ($$;$) {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    $rand_ports ||= $RandPorts;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            $val = $rand_ports->{$var} //= pick_free_port();
        } else {
            if (!defined $ENV{$var}) {
                stop_nginx();
                die "\n" . ($name // 'Test::Nginx')
                    . " - No environment $var defined.\n"
                    . "  (set \$$var in the environment of prove; it is used"
                    . " in this block's config or request)\n";
            }
            $val = $ENV{$var};
        }
        $val;
    }ge;
    return $text;
}

# ---------------------------------------------------------------------------
# ports, processes
# ---------------------------------------------------------------------------

my %UsedPorts;

sub pick_free_port () {
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
            Listen => 1, ReuseAddr => 1,
        ) or next;
        my $port = $s->sockport;
        close $s;
        next if $UsedPorts{$port}++;
        return $port;
    }
    die "Test::Nginx: cannot find a free TCP port on 127.0.0.1\n";
}

# Become a "child subreaper" (Linux >= 3.4) so that the daemonized nginx
# processes are re-parented to us, not to a PID 1 that may never reap them;
# we then reap them ourselves (see _reap).
our $Subreaper = do {
    require Config;
    my %nr = (x86_64 => 157, aarch64 => 167, i386 => 172, i686 => 172);
    my ($arch) = ($Config::Config{archname} // '') =~ /^(\w+?)-linux/;
    my $sys = $arch ? $nr{$arch} : undef;
    # PR_SET_CHILD_SUBREAPER = 36
    $sys && !$ENV{TEST_NGINX_NO_SUBREAPER} ? (syscall($sys, 36, 1, 0, 0, 0) == 0) : 0;
};

sub _reap () {
    1 while waitpid(-1, WNOHANG) > 0;
}

sub _proc_stat ($) {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return;
    my $line = <$fh>;
    close $fh;
    return unless defined $line && $line =~ /\)\s+(\S)\s+(-?\d+)\s+(-?\d+)/;
    return ($1, $2, $3);    # state, ppid, pgrp
}

# A process is alive if kill 0 works and it is not a zombie (PID 1 in this
# environment does not reap orphans).
sub process_alive ($) {
    my $pid = shift;
    return 0 unless $pid && $pid > 1;
    return 0 unless kill 0, $pid;
    my ($state) = _proc_stat($pid);
    return 0 if defined $state && ($state eq 'Z' || $state eq 'X');
    return 1;
}

sub _group_members ($) {
    my $pgid = shift;
    my @pids;
    opendir my $dh, '/proc' or return;
    for my $p (readdir $dh) {
        next unless $p =~ /^\d+$/;
        next if $p == $$;
        my ($state, undef, $pgrp) = _proc_stat($p);
        next unless defined $pgrp && $pgrp == $pgid;
        next if $state eq 'Z' || $state eq 'X';
        push @pids, $p;
    }
    closedir $dh;
    return @pids;
}

sub _wait_gone ($@) {
    my ($secs, $pgid, @pids) = @_;
    my $deadline = time + $secs;
    while (1) {
        _reap() if $Subreaper;
        my @alive = grep { process_alive($_) } @pids;
        push @alive, _group_members($pgid) if $pgid;
        return 1 unless @alive;
        return 0 if time > $deadline;
        sleep 0.01;
    }
}

# Gracefully stops the nginx started for the current block (SIGQUIT to the
# master, then SIGKILL to the master's whole process group).
sub stop_nginx () {
    my $pid = $NginxPid;
    return unless $pid;
    undef $NginxPid;
    return unless $$ == $MainPid;
    # nginx daemonizes with setsid(): the master's pid is the pgid of the
    # master and of all its workers.
    my ($state, undef, $pgrp) = _proc_stat($pid);
    my $pgid = (defined $pgrp && $pgrp == $pid) ? $pid : undef;
    if (process_alive($pid)) {
        # A SIGQUIT that arrives while the master is still starting up is
        # only acted upon at its next signal: repeat it every 0.5s.
        my $deadline = time + $QuitTimeout;
        while (time < $deadline) {
            kill 'QUIT', $pid;
            my $left = $deadline - time;
            _wait_gone($left < 0.5 ? $left : 0.5, $pgid, $pid) and return 1;
        }
        Test::More::diag("nginx (pid $pid) did not exit within ${QuitTimeout}s"
                         . " of SIGQUIT; killing it");
    }
    kill 'KILL', -$pgid if $pgid;
    kill 'KILL', $pid;
    kill 'KILL', $_ for ($pgid ? _group_members($pgid) : ());
    _wait_gone(2, $pgid, $pid);
    return 0;
}

# Runs a command with stdout+stderr appended to $out_file; returns the wait
# status, or undef on timeout (the command's process group is then killed).
sub run_cmd ($$$) {
    my ($argv, $out_file, $timeout) = @_;
    my $pid = fork;
    die "fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out_file or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        { exec { $argv->[0] } @$argv; }
        print STDERR "Test::Nginx: cannot exec $argv->[0]: $!\n";
        POSIX::_exit(127);
    }
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return -1 if $r < 0;
        if (time > $deadline) {
            kill 'KILL', -$pid;
            kill 'KILL', $pid;
            waitpid($pid, 0);
            return undef;
        }
        sleep 0.005;
    }
}

sub describe_status ($) {
    my $st = shift;
    return 'timed out' unless defined $st;
    return 'could not be run' if $st == -1;
    return 'exit code ' . ($st >> 8) unless $st & 127;
    return 'killed by signal ' . ($st & 127) . (($st & 128) ? ' (core dumped)' : '');
}

sub slurp ($) {
    my $f = shift;
    open my $fh, '<', $f or return '';
    local $/;
    my $d = <$fh>;
    close $fh;
    return $d // '';
}

sub nginx_version () {
    return $NginxVersion if defined $NginxVersion;
    my $tmp = File::Spec->catfile(File::Spec->tmpdir, "test-nginx-V.$$");
    unlink $tmp;
    my $st = run_cmd([$NginxBinary, '-V'], $tmp, 10);
    $NginxV = slurp($tmp);
    unlink $tmp;
    if (!defined $st || $st != 0 || $NginxV !~ m{version: \S+?/(\d+)\.(\d+)\.(\d+)}) {
        bail_out("cannot run the nginx binary '$NginxBinary' ("
                 . describe_status($st) . "): $NginxV\n"
                 . "Set TEST_NGINX_BINARY to the nginx to test.");
    }
    $NginxRawVersion = "$1.$2.$3";
    $NginxVersion = $1 * 1000000 + $2 * 1000 + $3;
    return $NginxVersion;
}

sub canon_version ($) {
    my @v = split /\./, shift;
    return ($v[0] // 0) * 1000000 + ($v[1] // 0) * 1000 + ($v[2] // 0);
}

# ---------------------------------------------------------------------------
# server root, config, start
# ---------------------------------------------------------------------------

sub _kill_stale_nginx () {
    return unless -f $PidFile;
    my $pid = slurp($PidFile);
    return unless $pid =~ /^\s*(\d+)\s*$/;
    $pid = $1;
    return unless process_alive($pid);
    my $cmdline = slurp("/proc/$pid/cmdline");
    return unless $cmdline =~ /nginx/;
    Test::More::diag("killing a stale nginx (pid $pid) left in $ServRoot");
    local $NginxPid = $pid;
    stop_nginx();
}

sub setup_server_root () {
    _kill_stale_nginx();
    if (-d $ServRoot) {
        opendir my $dh, $ServRoot or bail_out("cannot read $ServRoot: $!");
        my @entries = grep { !/^\.\.?$/ } readdir $dh;
        closedir $dh;
        my @unknown = grep {
            !/^(?:conf|logs|html|cache|\.test-nginx-servroot|\w+_temp|\w+_cache)$/
        } @entries;
        if (@unknown && !-e $Marker) {
            bail_out("refusing to remove $ServRoot: it holds @unknown and was not"
                     . " created by Test::Nginx (no .test-nginx-servroot file)");
        }
        remove_tree($ServRoot, { safe => 0 });
        bail_out("cannot remove $ServRoot") if -e $ServRoot;
    }
    make_path($ServRoot, $LogDir, $HtmlDir, $ConfDir);
    for my $d ($LogDir, $HtmlDir, $ConfDir) {
        bail_out("cannot create $d: $!") unless -d $d;
    }
    open my $m, '>', $Marker or bail_out("cannot write $Marker: $!");
    close $m;
    open my $out, '>', "$HtmlDir/index.html" or bail_out("cannot write index.html: $!");
    print $out "hello\n";
    close $out;
}

sub clean_server_root () {
    return if $NoClean;
    return unless -e $Marker;
    remove_tree($ServRoot, { safe => 0 });
}

sub write_user_files ($) {
    my $block = shift;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;
    if (!ref $files) {
        my $raw = $files;
        $files = [];
        my ($fname, $body, $date);
        open my $in, '<', \$raw;
        while (<$in>) {
            if (/^>>> (\S+)(?:\s+(.+))?/) {
                push @$files, [$fname, $body, $date] if $fname;
                ($fname, $date) = ($1, $2);
                undef $body;
            } else {
                $body .= $_;
            }
        }
        push @$files, [$fname, $body, $date] if $fname;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - --- user_files: only a string or an ARRAY is accepted");
    }
    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        $body = '' unless defined $body;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/}) {
            make_path($1) unless -d $1;
        }
        $body = expand_env_in_text($body, $name);
        open my $out, '>', $path or bail_out("$name - cannot write $path: $!");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - cannot set the date of $path to $date");
        }
    }
}

sub _trimmed ($) {
    my $v = shift;
    return undef unless defined $v;
    $v =~ s/^\s+|\s+$//g;
    return $v;
}

# The stream {} block of --- stream_config / --- stream_server_config ('' if neither).
sub _stream_block ($) {
    my $block = shift;
    my $name = $block->name;
    my $sc = $block->stream_config;
    my $ssc = $block->stream_server_config;
    $StreamServer = 0;
    return '' unless defined $sc || defined $ssc;
    my $out = "stream {\n" . expand_env_in_text($sc // '', $name) . "\n";
    if (defined $ssc) {
        $StreamServer = 1;
        # the real Test::Nginx::Socket::Lua::Stream spells it steam_listen_option
        my $opt = $block->stream_listen_option // $block->steam_listen_option // '';
        chomp $opt;
        $opt = " $opt" if length $opt;
        $out .= "    server {\n        listen $ServerAddr:$StreamPort$opt;\n\n"
              . expand_env_in_text($ssc, $name) . "\n    }\n";
    }
    return "$out}\n";
}

sub write_config_file ($) {
    my $block = shift;
    my $name = $block->name;

    my $main_config = expand_env_in_text($block->main_config // '', $name);
    if ($LoadModules) {
        my @mods = map { "load_module $_;" } grep { length } split /\s+/, $LoadModules;
        $main_config = join("\n", @mods, $main_config);
    }
    my $post_main_config = expand_env_in_text($block->post_main_config // '', $name);
    my $http_config = expand_env_in_text($block->http_config // '', $name);
    my $config = expand_env_in_text($block->config // '', $name);
    my $stream = _stream_block($block);
    my $log_level = _trimmed($block->log_level) || $LogLevel;

    my @temp;
    push @temp, "client_body_temp_path $ServRoot/client_body_temp;"
        unless $http_config =~ /\bclient_body_temp_path\b/;
    push @temp, "proxy_temp_path $ServRoot/proxy_temp;"
        unless $http_config =~ /\bproxy_temp_path\b/
            || $NginxV =~ /--without-http_proxy_module/;
    push @temp, "fastcgi_temp_path $ServRoot/fastcgi_temp;"
        unless $NginxV =~ /--without-http_fastcgi_module/;
    push @temp, "uwsgi_temp_path $ServRoot/uwsgi_temp;"
        unless $NginxV =~ /--without-http_uwsgi_module/;
    push @temp, "scgi_temp_path $ServRoot/scgi_temp;"
        unless $NginxV =~ /--without-http_scgi_module/;
    my $temp = join "\n    ", @temp;

    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" } @EnvToNginx;

    (my $quoted_server_name = $ServerName) =~ s/(['\\])/\\$1/g;

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $user = defined $WorkerUser ? "user $WorkerUser;\n"
             : $> == 0             ? "user root;\n"
             : '';

    open my $out, '>', $ConfFile or bail_out("cannot write $ConfFile: $!");
    print $out <<"_EOC_";
worker_processes  $Workers;
daemon on;
master_process $MasterProcessEnabled;
error_log $ErrLogFile $log_level;
pid       $PidFile;
$env
$main_config
$stream
http {
    access_log $AccLogFile;
    $temp

    default_type text/plain;
    keepalive_timeout  68;

$http_config

    server {
        listen          $ServerAddr:$ServerPort;
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
_EOC_
    close $out;

    if ($Verbose) {
        Test::More::diag("---- $name: $ConfFile ----\n" . slurp($ConfFile));
    }
}

sub nginx_cmd (@) {
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    # -e (since 1.19.5): early startup errors go to our error.log too
    push @cmd, '-e', $ErrLogFile if nginx_version() >= 1019005;
    return (@cmd, @_);
}

# Returns (ok, status, output) for `nginx -t`.
sub test_config () {
    my $file = "$LogDir/nginx-t.out";
    unlink $file;
    my $st = run_cmd([nginx_cmd('-t')], $file, $StartTimeout);
    return ((defined $st && $st == 0), $st, slurp($file));
}

sub _listening ($) {
    my $port = shift;
    my $hex = sprintf '%04X', $port;
    my $seen_file;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        $seen_file = 1;
        while (<$fh>) {
            my @f = split ' ';
            next unless @f > 3 && $f[3] eq '0A';
            return 1 if $f[1] =~ /:$hex$/;
        }
    }
    return undef if $seen_file;
    # no /proc/net/tcp: fall back to a connect probe
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return $s ? 1 : undef;
}

# Starts nginx; returns (ok, message, startup_output).
sub start_nginx () {
    my $file = "$LogDir/nginx-start.out";
    unlink $file;
    unlink $PidFile;
    my $st = run_cmd([nginx_cmd()], $file, $StartTimeout);
    my $output = slurp($file);
    if (!defined $st || $st != 0) {
        return (0, "nginx failed to start (" . describe_status($st) . ")", $output, $st);
    }
    my $deadline = time + 5;
    my $pid;
    while (1) {
        my $p = slurp($PidFile);
        if ($p =~ /^\s*(\d+)\s*$/ && process_alive($1)) {
            $pid = $1;
            last;
        }
        last if time > $deadline;
        sleep 0.01;
    }
    if (!$pid) {
        return (0, "nginx started but no live process in $PidFile after 5s", $output, $st);
    }
    $NginxPid = $pid;
    $deadline = time + 5;
    until (_listening($ServerPort)) {
        if (!process_alive($pid)) {
            undef $NginxPid;
            return (0, "nginx (pid $pid) exited right after starting", $output, $st);
        }
        if (time > $deadline) {
            return (0, "nginx is not listening on $ServerAddr:$ServerPort after 5s",
                    $output, $st);
        }
        sleep 0.01;
    }
    if ($StreamServer && $StreamPort) {
        until (_listening($StreamPort)) {
            if (!process_alive($pid)) {
                undef $NginxPid;
                return (0, "nginx (pid $pid) exited right after starting", $output, $st);
            }
            if (time > $deadline) {
                return (0, "nginx is not listening on the stream port $ServerAddr:$StreamPort"
                        . " after 5s", $output, $st);
            }
            sleep 0.01;
        }
    }
    return (1, '', $output, $st);
}

# ---------------------------------------------------------------------------
# error log
# ---------------------------------------------------------------------------

# Lines of error.log since $ErrLogFilePos; returns (\@lines, $end_pos).
sub error_log_lines (;$) {
    my $from = shift // $ErrLogFilePos;
    open my $in, '<', $ErrLogFile or return ([], $from);
    seek $in, $from, 0 if $from && !$CheckAccumErrLog;
    my @lines = <$in>;
    my $end = tell $in;
    close $in;
    return (\@lines, $end);
}

sub error_log_data () {
    sleep $TestNginxSleep * 3;
    my ($lines, $end) = error_log_lines();
    $ErrLogFilePos = $end;
    return $lines;
}

sub error_log_size () { -s $ErrLogFile || 0 }

# ---------------------------------------------------------------------------
# cleanup: never leave nginx behind
# ---------------------------------------------------------------------------

sub cleanup () {
    return unless $$ == $MainPid;
    stop_nginx();
    for my $h (@CleanupHandlers) { eval { $h->() } }
}

my $Handling;
for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub {
        return if $Handling++;
        cleanup();
        warn "Test::Nginx: caught SIG$sig, nginx stopped\n";
        exit 128 + 2;
    };
}

END {
    local $?;
    cleanup() if $$ == $MainPid;
}

1;
