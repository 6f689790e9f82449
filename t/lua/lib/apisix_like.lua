-- Drives resty.proxy-wasm the way APISIX's apisix/wasm.lua does (test code): plugins loaded
-- once per worker, one plugin ctx per route configuration created on first use and cached,
-- a failed callback answered with 503 in the request phases and only logged in the others.
local wasm = require("resty.proxy-wasm")

local _M = { plugins = {}, ctxs = {} }

function _M.load(name, file)
    local plugin, err = wasm.load(name, file)
    if not plugin then
        ngx.log(ngx.ERR, "load ", name, ": ", err)
        return nil, err
    end
    _M.plugins[name] = plugin
    return plugin
end

-- The plugin ctx of (plugin, conf), like APISIX's conf.plugin_ctxs[conf_type#conf_id].
function _M.ctx(name, conf)
    local key = name .. "#" .. conf
    local ctx = _M.ctxs[key]
    if ctx then
        return ctx
    end
    local err
    ctx, err = wasm.on_configure(_M.plugins[name], conf)
    if not ctx then
        return nil, err
    end
    _M.ctxs[key] = ctx
    return ctx
end

local function run(fn, name, conf, fail_status, ...)
    local ctx, err = _M.ctx(name, conf)
    if ctx then
        local ok
        ok, err = fn(ctx, ...)
        if ok then
            return true
        end
    end
    ngx.log(ngx.ERR, name, ": failed to run wasm plugin: ", err)
    if fail_status then
        return ngx.exit(fail_status)
    end
end

function _M.access(name, conf)
    return run(wasm.on_http_request_headers, name, conf, 503)
end

function _M.request_body(name, conf)
    ngx.req.read_body()
    return run(wasm.on_http_request_body, name, conf, 503, ngx.req.get_body_data(), true)
end

function _M.header_filter(name, conf)
    return run(wasm.on_http_response_headers, name, conf)
end

function _M.body_filter(name, conf)
    return run(wasm.on_http_response_body, name, conf)
end

function _M.log(name, conf)
    return run(wasm.on_log, name, conf)
end

return _M
