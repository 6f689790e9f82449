# Reads the example configurations of nginx-conf/ for t/024-examples.t and t/lua/011-example.t.
#   nginx_t($file, %links)   runs `nginx -t` on the file as shipped, in a prefix holding the
#                            links its comments describe (modules/, filters/, lua/); returns
#                            (exit status, output)
#   split($file, $filters)   (http_config, config): the file's http{} body without the server
#                            listening on 127.0.0.1:8080, and that server's body without its
#                            listen line; comments and access_log dropped, the prefix's
#                            filters/ pointed at $filters, ports 8081 and 8082 made $TEST_NGINX_RAND_PORT_1 and _2.
package ExampleConf;
use strict;
use warnings;
use File::Path qw(make_path remove_tree);

sub slurp {
    my $f = "nginx-conf/$_[0]";
    open my $fh, '<', $f or die "cannot read $f: $!";
    local $/;
    return <$fh>;
}

# The text between the braces that open at $open (the index of a '{'), and the closing index.
sub _braced {
    my ($s, $open) = @_;
    my $depth = 0;
    for my $i ($open .. length($s) - 1) {
        my $c = substr($s, $i, 1);
        $depth++ if $c eq '{';
        if ($c eq '}' && --$depth == 0) {
            return (substr($s, $open + 1, $i - $open - 1), $i);
        }
    }
    die "unbalanced braces";
}

sub split {
    my ($file, $filters) = @_;
    my $text = slurp($file);
    $text =~ s/^\s*#[^\n]*//mg;
    $text =~ /^http\s*\{/m or die "no http block in $file";
    my ($http) = _braced($text, $+[0] - 1);
    my $config;
    while ($http =~ /\bserver\s*\{/g) {
        my $start = $-[0];
        my ($body, $end) = _braced($http, $+[0] - 1);
        if ($body =~ /listen\s+127\.0\.0\.1:8080\s*;/) {
            ($config = $body) =~ s/listen\s+127\.0\.0\.1:8080\s*;//;
            substr($http, $start, $end - $start + 1) = '';
            last;
        }
    }
    defined $config or die "no server listening on 127.0.0.1:8080 in $file";
    $http =~ s/^\s*access_log[^\n]*\n//mg;
    for ($http, $config) {
        # In directives (`wasm_module x filters/x.wasm`) and in Lua (`ngx.config.prefix() ..
        # "filters/x.wasm"`): both name the prefix's filters/.
        s{ngx\.config\.prefix\(\) \.\. "filters/}{"$filters/}g;
        s{(\s)filters/}{$1$filters/}g;
        s/127\.0\.0\.1:8081/127.0.0.1:\$TEST_NGINX_RAND_PORT_1/g;
        s/127\.0\.0\.1:8082/127.0.0.1:\$TEST_NGINX_RAND_PORT_2/g;
    }
    return ($http, $config);
}

sub nginx_t {
    my ($file, %links) = @_;
    my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
    my $prefix = ($ENV{TEST_NGINX_SERVROOT} // 't/servroot') . "-examples";
    remove_tree($prefix);
    make_path("$prefix/conf", "$prefix/logs");
    my $text = slurp($file);
    for my $link (sort keys %links) {
        my $target = $links{$link};
        if ($link eq 'modules/ngx_http_proxy_wasm_module.so' && $target eq '') {
            $text =~ s{^load_module modules/ngx_http_proxy_wasm_module\.so;}{}m; # built in statically
            next;
        }
        (my $dir = "$prefix/$link") =~ s{/[^/]+$}{};
        make_path($dir);
        symlink($target, "$prefix/$link") or die "symlink $prefix/$link: $!";
    }
    open my $fh, '>', "$prefix/conf/$file" or die $!;
    print $fh $text;
    close $fh;
    my $out = `$nginx -p $prefix/ -c conf/$file -e $prefix/logs/error.log -t 2>&1`;
    my $st = $?;
    remove_tree($prefix);
    return ($st, $out);
}

1;
