// AssemblyScript test filter (SDK: @solo-io/proxy-runtime 0.1.8, ABI 0.2.0), for t/010-sdk-breadth.t.
//
//   plugin configuration   the name of the request header that blocks (default "x-as-block")
//   on_configure           logs "as filter configured: header=<name> config=<configuration or none>"
//   on_request_headers     header present -> local response 403 "blocked by assemblyscript",
//                          x-blocked-by: as; otherwise adds request header x-as-seen: 1
//   on_response_headers    adds response header x-as-filter: <configuration or "none">
export * from "@solo-io/proxy-runtime/proxy"; // the exports the host calls (proxy_on_*, malloc)
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
  HeaderPair, Headers, log, LogLevelValues, send_local_response, GrpcStatusValues, WasmResultValues,
} from "@solo-io/proxy-runtime";
import {
  get_buffer_bytes, BufferTypeValues, HeaderMapTypeValues, Reference,
} from "@solo-io/proxy-runtime/runtime";
import { proxy_get_header_map_value } from "@solo-io/proxy-runtime/imports";
import { free } from "@solo-io/proxy-runtime/malloc";

const DEFAULT_BLOCK_HEADER = "x-as-block";

class AsFilterRoot extends RootContext {
  config: string = "";
  blockHeader: string = DEFAULT_BLOCK_HEADER;

  createContext(context_id: u32): Context {
    return new AsFilter(context_id, this);
  }

  // The SDK's own RootContext.onConfigure passes `configuration_size` as the return_size
  // pointer of proxy_get_buffer_bytes (it writes the size to guest address <size> and then
  // trusts a stale size field), so the configuration is read here with the SDK's correct
  // get_buffer_bytes helper.
  onConfigure(configuration_size: u32): bool {
    this.config = configuration_size == 0
      ? ""
      : String.UTF8.decode(get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    this.blockHeader = this.config.length > 0 ? this.config : DEFAULT_BLOCK_HEADER;
    log(LogLevelValues.info, "as filter configured: header=" + this.blockHeader
      + " config=" + (this.config.length > 0 ? this.config : "none"));
    return true;
  }
}

// Whether request header `name` is present, by the hostcall's status (ABI 0.2.0: NOT_FOUND
// for a missing key, OK otherwise, even for an empty value).
function requestHeaderPresent(name: string): bool {
  const key = String.UTF8.encode(name);
  const data = new Reference<usize>();
  const size = new Reference<usize>();
  const rc = proxy_get_header_map_value(HeaderMapTypeValues.RequestHeaders, changetype<usize>(key),
    key.byteLength, data.ptr(), size.ptr());
  if (rc == WasmResultValues.Ok && data.data != 0) {
    free(data.data); // allocated by the host through malloc
  }
  return rc == WasmResultValues.Ok;
}

class AsFilter extends Context {
  constructor(context_id: u32, root_context: AsFilterRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as AsFilterRoot;
    if (requestHeaderPresent(root.blockHeader)) {
      const headers: Headers = [];
      headers.push(new HeaderPair(String.UTF8.encode("x-blocked-by"), String.UTF8.encode("as")));
      send_local_response(403, "as_blocked", String.UTF8.encode("blocked by assemblyscript"),
        headers, GrpcStatusValues.InvalidCode);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add("x-as-seen", "1");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as AsFilterRoot;
    stream_context.headers.response.add("x-as-filter", root.config.length > 0 ? root.config : "none");
    return FilterHeadersStatusValues.Continue;
  }
}

// Our host reports plugin_root_id as "" (nginx has no root_id), so register under "".
registerRootContext((context_id: u32): RootContext => { return new AsFilterRoot(context_id); }, "");
