package Test::Nginx::Socket::Lua;

# Alias of Test::Nginx::Socket (as in openresty/test-nginx, where
# Test::Nginx::Socket::Lua is Test::Nginx::Socket plus ngx_lua conveniences).

use strict;
use warnings;

use Test::Nginx::Socket ();

our $VERSION = $Test::Nginx::Socket::VERSION;
our @EXPORT = @Test::Nginx::Socket::EXPORT;

sub import {
    shift;
    unshift @_, 'Test::Nginx::Socket';
    goto &Test::Nginx::Socket::import;
}

1;
