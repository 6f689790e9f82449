-- resty.proxy-wasm for ngx-proxy-wasm: run Proxy-Wasm plugins from OpenResty / APISIX Lua.
--
-- Same API as api7/wasm-nginx-module's library (load, on_configure, on_http_request_headers,
-- on_http_request_body, on_http_response_headers, on_http_response_body), plus on_log, and
-- an error message for every misuse. Needs lua-resty-core and `wasm_vm wasmer;` in the http
-- block of nginx.conf; HTTP calls are made with cosockets (no lua-resty-http needed).

local ffi = require("ffi")
local base = require("resty.core.base")

local C = ffi.C
local ffi_gc = ffi.gc
local ffi_new = ffi.new
local ffi_string = ffi.string
local get_request = base.get_request
local ngx = ngx
local ngx_get_phase = ngx.get_phase
local type = type
local tonumber = tonumber
local tostring = tostring
local concat = table.concat

base.allows_subsystem("http")

-- Each declaration on its own, so that loading api7's library in the same VM does not clash.
local decls = {
    [[typedef struct { ngx_http_lua_ffi_str_t key; ngx_http_lua_ffi_str_t value; } proxy_wasm_table_elt_t;]],
    [[void *ngx_http_wasm_load_plugin(const char *name, size_t name_len, const char *code, size_t size);]],
    [[void ngx_http_wasm_unload_plugin(void *plugin);]],
    [[void *ngx_http_wasm_on_configure(void *plugin, const char *conf, size_t size);]],
    [[void ngx_http_wasm_delete_plugin_ctx(void *hwp_ctx);]],
    [[long ngx_http_wasm_on_http(void *hwp_ctx, void *r, int type, const unsigned char *body, size_t size, int end_of_body);]],
    [[ngx_str_t *ngx_http_wasm_fetch_local_body(void *r);]],
    [[long ngx_http_wasm_call_max_headers_count(void *r);]],
    [[void ngx_http_wasm_call_get(void *r, ngx_str_t *method, ngx_str_t *scheme, ngx_str_t *host, ngx_str_t *path, proxy_wasm_table_elt_t *headers, ngx_str_t *body, int32_t *timeout);]],
    [[long ngx_http_wasm_on_http_call_resp(void *hwp_ctx, void *r, proxy_wasm_table_elt_t *headers, unsigned long n_header, ngx_str_t *body);]],
    [[void ngx_proxy_wasm_lua_last_error(ngx_str_t *out);]],
    [[long ngx_proxy_wasm_lua_on_log(void *hwp_ctx, void *r);]],
    [[int ngx_proxy_wasm_lua_body(void *r, ngx_str_t *out);]],
    [[int ngx_proxy_wasm_lua_replace_body(void *r, ngx_str_t *out);]],
}
for _, d in ipairs(decls) do
    pcall(ffi.cdef, d)
end

-- This library drives ngx-proxy-wasm only: its extensions tell it apart from api7's module.
local ours = pcall(function() return C.ngx_proxy_wasm_lua_last_error end)
if not pcall(function() return C.ngx_http_wasm_load_plugin end) then
    error("resty.proxy-wasm: the ngx-proxy-wasm module is not loaded "
          .. "(load_module .../ngx_http_proxy_wasm_module.so; in nginx.conf)")
end

local HTTP_REQUEST_HEADERS = 1
local HTTP_REQUEST_BODY = 2
local HTTP_RESPONSE_HEADERS = 4
local HTTP_RESPONSE_BODY = 8
local RC_NEED_HTTP_CALL = 1

local str_buf = ffi_new("ngx_str_t[1]")

local function last_error()
    if not ours then
        return nil
    end
    C.ngx_proxy_wasm_lua_last_error(str_buf)
    if str_buf[0].len == 0 then
        return nil
    end
    return ffi_string(str_buf[0].data, str_buf[0].len)
end

local function with_reason(msg)
    local reason = last_error()
    if reason and reason:sub(1, #msg) == msg then
        return reason
    elseif reason then
        return msg .. ": " .. reason
    end
    return msg
end

-- Lua handles: plugin and plugin ctx are both cdata, told apart by these weak tables.
local plugins = setmetatable({}, { __mode = "k" })
local plugin_ctxs = setmetatable({}, { __mode = "k" })

local request_phases = { rewrite = true, access = true, content = true }
local header_filter_phase = { header_filter = true }
local body_filter_phase = { body_filter = true }
local log_phase = { log = true }

local function check_ctx(fname, ctx, phases, where)
    if type(ctx) ~= "cdata" or not plugin_ctxs[ctx] then
        return nil, "bad plugin ctx: " .. fname .. " takes what on_configure returned"
    end
    local phase = ngx_get_phase()
    if not phases[phase] then
        return nil, fname .. " called in the " .. phase .. " phase: call it from " .. where
    end
    local r = get_request()
    if not r then
        return nil, "bad request: " .. fname .. " needs a request"
    end
    return r
end

-- ssl_verify: HTTPS calls check the server certificate (set to false to accept any).
local _M = { version = "0.1.0", ssl_verify = true }

function _M.load(name, path)
    if type(name) ~= "string" or name == "" then
        return nil, "bad plugin name: a non-empty string is required"
    end
    if type(path) ~= "string" or path == "" then
        return nil, "bad plugin path: the path of a .wasm file is required"
    end
    local f, err = io.open(path, "rb")
    if not f then
        return nil, "failed to open wasm plugin: " .. tostring(err)
    end
    local code = f:read("*a")
    f:close()
    if not code or code == "" then
        return nil, "failed to read wasm plugin " .. path .. ": empty file"
    end
    local plugin = C.ngx_http_wasm_load_plugin(name, #name, code, #code)
    if plugin == nil then
        return nil, with_reason("failed to load wasm plugin")
    end
    plugin = ffi_gc(plugin, C.ngx_http_wasm_unload_plugin)
    plugins[plugin] = name
    return plugin
end

function _M.on_configure(plugin, conf)
    if type(plugin) ~= "cdata" or not plugins[plugin] then
        return nil, "bad plugin: on_configure takes what load returned"
    end
    if type(conf) ~= "string" or conf == "" then
        return nil, "bad conf: a non-empty string is required"
    end
    local ctx = C.ngx_http_wasm_on_configure(plugin, conf, #conf)
    if ctx == nil then
        return nil, with_reason("failed to run proxy_on_configure")
    end
    ctx = ffi_gc(ctx, C.ngx_http_wasm_delete_plugin_ctx)
    -- The plugin stays loaded while a ctx of it is alive (the module keeps its instance too).
    plugin_ctxs[ctx] = plugin
    return ctx
end

-- HTTP calls -----------------------------------------------------------------------------

local function split_host(host, default_port)
    local h, p = host:match("^%[(.+)%]:(%d+)$")
    if h then
        return h, tonumber(p)
    end
    h = host:match("^%[(.+)%]$")
    if h then
        return h, default_port
    end
    h, p = host:match("^([^:]+):(%d+)$")
    if h then
        return h, tonumber(p)
    end
    return host, default_port
end

-- The largest call response body we read (as the native path's).
local MAX_CALL_BODY = 16 * 1024 * 1024

local function read_body(sock, headers, method, status)
    if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
        return ""
    end
    local te = headers["transfer-encoding"]
    if te and te:lower():find("chunked", 1, true) then
        local parts, total = {}, 0
        while true do
            local line, err = sock:receive("*l")
            if not line then
                return nil, err
            end
            local hex = line:match("^%s*(%x+)")
            local size = hex and tonumber(hex, 16)
            if not size then
                return nil, "bad chunk size line: " .. line
            end
            total = total + size
            if total > MAX_CALL_BODY then
                return nil, "response body over " .. MAX_CALL_BODY .. " bytes"
            end
            if size == 0 then
                repeat
                    line, err = sock:receive("*l")
                    if not line then
                        return nil, err
                    end
                until line == ""
                return concat(parts)
            end
            local data
            data, err = sock:receive(size)
            if not data then
                return nil, err
            end
            parts[#parts + 1] = data
            sock:receive("*l")
        end
    end
    local cl = headers["content-length"]
    if cl then
        local len = cl:match("^%d+$") and tonumber(cl)
        if not len or len > MAX_CALL_BODY then
            return nil, "bad or too large Content-Length: " .. cl
        end
        return sock:receive(len)
    end
    -- Until the server closes (we sent Connection: close), within the bound.
    local parts, total = {}, 0
    while true do
        local data, err = sock:receiveany(65536)
        if not data then
            if err == "closed" then
                return concat(parts)
            end
            return nil, err
        end
        total = total + #data
        if total > MAX_CALL_BODY then
            return nil, "response body over " .. MAX_CALL_BODY .. " bytes"
        end
        parts[#parts + 1] = data
    end
end

-- Sends one HTTP/1.1 request; returns status, headers (list of {name, value}), body.
local function send_request(method, scheme, host, path, headers, body, timeout)
    local https = scheme == "https"
    local h, port = split_host(host, https and 443 or 80)
    local sock = ngx.socket.tcp()
    sock:settimeouts(timeout, timeout, timeout)
    local ok, err = sock:connect(h, port)
    if not ok then
        return nil, "connect to " .. host .. ": " .. tostring(err)
    end
    local req = { method, " ", path, " HTTP/1.1\r\n" }
    local has_host = false
    local server_name = h
    for _, kv in ipairs(headers) do
        local k = kv[1]:lower()
        if k == "host" then
            has_host = true
            server_name = split_host(kv[2])
        end
        if k:find("[\r\n:]") or kv[2]:find("[\r\n]") then
            sock:close()
            return nil, "bad header in the call: " .. kv[1]
        end
        if k ~= "connection" and k ~= "content-length" and k ~= "transfer-encoding" then
            req[#req + 1] = kv[1] .. ": " .. kv[2] .. "\r\n"
        end
    end
    if not has_host then
        req[#req + 1] = "Host: " .. host .. "\r\n"
    end
    if #body > 0 or method == "POST" or method == "PUT" or method == "PATCH" then
        req[#req + 1] = "Content-Length: " .. #body .. "\r\n"
    end
    req[#req + 1] = "Connection: close\r\n\r\n"
    req[#req + 1] = body
    if https then
        -- The name checked and sent as SNI is the call's :authority (else the upstream's host);
        -- trusted CAs come from lua_ssl_trusted_certificate.
        ok, err = sock:sslhandshake(nil, server_name, _M.ssl_verify)
        if not ok then
            sock:close()
            return nil, "TLS handshake with " .. host .. " (" .. server_name .. "): " .. tostring(err)
        end
    end
    ok, err = sock:send(req)
    if not ok then
        sock:close()
        return nil, "send to " .. host .. ": " .. tostring(err)
    end
    local line
    line, err = sock:receive("*l")
    if not line then
        sock:close()
        return nil, "read status from " .. host .. ": " .. tostring(err)
    end
    local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
    if not status then
        sock:close()
        return nil, "bad status line from " .. host .. ": " .. line
    end
    local list, map = {}, {}
    while true do
        line, err = sock:receive("*l")
        if not line then
            sock:close()
            return nil, "read headers from " .. host .. ": " .. tostring(err)
        end
        if line == "" then
            break
        end
        local k, v = line:match("^([^:]+):%s*(.-)%s*$")
        if k then
            k = k:lower()
            list[#list + 1] = { k, v }
            map[k] = map[k] and (map[k] .. ", " .. v) or v
        end
    end
    local resp_body
    resp_body, err = read_body(sock, map, method, status)
    sock:close()
    if not resp_body then
        return nil, "read body from " .. host .. ": " .. tostring(err)
    end
    return status, list, resp_body
end

-- Fetches the pending call, runs it, and hands the response (or its failure) to the plugin.
local function run_http_call(ctx, r)
    local n = tonumber(C.ngx_http_wasm_call_max_headers_count(r))
    local elts = ffi_new("proxy_wasm_table_elt_t[?]", n + 1)
    local s = ffi_new("ngx_str_t[5]") -- method, scheme, host, path, body: fresh for every call
    local timeout = ffi_new("int32_t[1]")
    C.ngx_http_wasm_call_get(r, s, s + 1, s + 2, s + 3, elts, s + 4, timeout)
    local function str(i)
        return s[i].len > 0 and ffi_string(s[i].data, s[i].len) or nil
    end
    local method, scheme, host, path, body = str(0) or "GET", str(1) or "http", str(2) or "", str(3) or "/", str(4) or ""
    if path:sub(1, 1) ~= "/" then
        path = "/" .. path
    end
    local headers = {}
    for i = 0, n do
        if elts[i].key.len == 0 then
            break
        end
        headers[#headers + 1] = { ffi_string(elts[i].key.data, elts[i].key.len),
                                  ffi_string(elts[i].value.data, elts[i].value.len) }
    end
    local ms = tonumber(timeout[0])
    if ms <= 0 then
        ms = 60000
    end
    -- A Lua error in the client (a malformed response) is a failed call, not a failed request:
    -- the plugin's callback still runs.
    local pok, status, resp_headers, resp_body = pcall(send_request, method, scheme, host, path, headers, body, ms)
    if not pok then
        status, resp_headers = nil, "http call error: " .. tostring(status)
    end
    local out_n, out, out_body = 0, nil, nil
    local keep = {} -- the Lua strings the cdata points to stay alive until the call returns
    if status then
        resp_headers[#resp_headers + 1] = { ":status", tostring(status) }
        out_n = #resp_headers
        out = ffi_new("proxy_wasm_table_elt_t[?]", out_n)
        for i, kv in ipairs(resp_headers) do
            keep[#keep + 1] = kv
            out[i - 1].key.data, out[i - 1].key.len = kv[1], #kv[1]
            out[i - 1].value.data, out[i - 1].value.len = kv[2], #kv[2]
        end
        out_body = ffi_new("ngx_str_t[1]")
        out_body[0].data, out_body[0].len = resp_body, #resp_body
        keep[#keep + 1] = resp_body
    else
        ngx.log(ngx.ERR, "proxy-wasm: http call failed: ", resp_headers, ", uri: ", scheme, "://", host, path)
    end
    -- Back-off, as on the native path: the k-th failed call in a row of this request is
    -- answered after min(5 ms * 2^(k-1), 1 s), so a plugin that retries a call failing
    -- without network I/O yields to the event loop instead of spinning in this loop.
    local fails = status and 0 or ((ngx.ctx.proxy_wasm_call_fails or 0) + 1)
    ngx.ctx.proxy_wasm_call_fails = fails
    if fails > 0 then
        local ms = math.min(5 * 2 ^ (math.min(fails, 9) - 1), 1000)
        ngx.log(ngx.INFO, "proxy-wasm: ", fails, " failed call(s) in a row: answering after ", ms, " ms")
        pcall(ngx.sleep, ms / 1000)
    end
    local rc = C.ngx_http_wasm_on_http_call_resp(ctx, r, out, out_n, out_body)
    keep = nil
    return tonumber(rc)
end

-- The return-code loop of the request callbacks: go on, run HTTP calls, or answer locally.
local function handle_rc(ctx, r, rc, what)
    while true do
        if rc < 0 then
            return nil, with_reason("failed to run " .. what)
        end
        if rc == RC_NEED_HTTP_CALL then
            rc = run_http_call(ctx, r)
            what = "proxy_on_http_call_response"
        elseif rc >= 100 then
            if rc == 444 then
                return ngx.exit(444)
            end
            -- Status and headers are set by the module; the body is sent as given.
            local p = C.ngx_http_wasm_fetch_local_body(r)
            local body = p ~= nil and ffi_string(p.data, p.len) or ""
            ngx.status = rc
            ngx.header["Content-Length"] = #body
            if #body > 0 then
                ngx.print(body)
            end
            return ngx.exit(ngx.HTTP_OK)
        else
            return true
        end
    end
end

-- Request callbacks ----------------------------------------------------------------------

function _M.on_http_request_headers(ctx)
    local r, err = check_ctx("on_http_request_headers", ctx, request_phases, "rewrite_by_lua or access_by_lua")
    if not r then
        return nil, err
    end
    local rc = tonumber(C.ngx_http_wasm_on_http(ctx, r, HTTP_REQUEST_HEADERS, nil, 0, 1))
    return handle_rc(ctx, r, rc, "proxy_on_http_request_headers")
end

function _M.on_http_request_body(ctx, body, end_of_body)
    local r, err = check_ctx("on_http_request_body", ctx, request_phases, "rewrite_by_lua or access_by_lua")
    if not r then
        return nil, err
    end
    if body ~= nil and type(body) ~= "string" then
        return nil, "bad body: a string or nil is required"
    end
    body = body or ""
    local eob = (end_of_body == nil or end_of_body) and 1 or 0
    local rc = tonumber(C.ngx_http_wasm_on_http(ctx, r, HTTP_REQUEST_BODY, body, #body, eob))
    if (rc == 0 or rc == 1) and ours and C.ngx_proxy_wasm_lua_body(r, str_buf) == 1 then
        -- The plugin rewrote the body (maybe while dispatching a call): the upstream gets the
        -- new one (needs ngx.req.read_body()).
        local ok, e = pcall(ngx.req.set_body_data, ffi_string(str_buf[0].data, str_buf[0].len))
        if not ok then
            ngx.log(ngx.WARN, "proxy-wasm: cannot replace the request body: ", e)
        end
    end
    return handle_rc(ctx, r, rc, "proxy_on_http_request_body")
end

-- Response callbacks ---------------------------------------------------------------------

function _M.on_http_response_headers(ctx)
    local r, err = check_ctx("on_http_response_headers", ctx, header_filter_phase, "header_filter_by_lua")
    if not r then
        return nil, err
    end
    local rc = tonumber(C.ngx_http_wasm_on_http(ctx, r, HTTP_RESPONSE_HEADERS, nil, 0, 1))
    if rc < 0 then
        return nil, with_reason("failed to run proxy_on_http_response_headers")
    end
    -- rc >= 100: the plugin's local response replaced status and headers; its body replaces
    -- the upstream's in on_http_response_body.
    return true
end

function _M.on_http_response_body(ctx)
    local r, err = check_ctx("on_http_response_body", ctx, body_filter_phase, "body_filter_by_lua")
    if not r then
        return nil, err
    end
    local chunk, eof = ngx.arg[1] or "", ngx.arg[2] and 1 or 0
    if ours and C.ngx_proxy_wasm_lua_replace_body(r, str_buf) == 1 then
        ngx.arg[1] = eof == 1 and ffi_string(str_buf[0].data, str_buf[0].len) or ""
        return true
    end
    local rc = tonumber(C.ngx_http_wasm_on_http(ctx, r, HTTP_RESPONSE_BODY, chunk, #chunk, eof))
    if rc < 0 then
        return nil, with_reason("failed to run proxy_on_http_response_body")
    end
    if ours and C.ngx_proxy_wasm_lua_body(r, str_buf) == 1 then
        ngx.arg[1] = ffi_string(str_buf[0].data, str_buf[0].len)
    end
    return true
end

function _M.on_log(ctx)
    local r, err = check_ctx("on_log", ctx, log_phase, "log_by_lua")
    if not r then
        return nil, err
    end
    if not ours then
        return nil, "on_log needs the ngx-proxy-wasm module"
    end
    if tonumber(C.ngx_proxy_wasm_lua_on_log(ctx, r)) < 0 then
        return nil, with_reason("failed to run proxy_on_log")
    end
    return true
end

return _M
