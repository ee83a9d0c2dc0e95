// `require('edgefc/supabase')`: supabase-js's functions.invoke (and MemFire's
// supabase-wechat-stable-v2) over the local edgefc runtime.

/** Where the runtime is, as FCClient's options say it; by default the hosted function's connection or the environment. */
export interface EdgeFCEndpoint {
  config?: string
  socketPath?: string
  token?: string
  connectTimeoutMs?: number
  timeoutMs?: number
}

export declare class FunctionsError extends Error {
  context: any
  constructor(message: string, name?: string, context?: any)
  toJSON(): { name: string; message: string; context: any }
}
/** No runtime to send the call to; `context` is the underlying error. */
export declare class FunctionsFetchError extends FunctionsError {
  constructor(context: any)
}
/** The runtime refused the call (unknown function, queue full, timeout, too large); `context` is a Response. */
export declare class FunctionsRelayError extends FunctionsError {
  context: Response
  constructor(context: Response)
}
/** The function threw or answered with a non-2xx status; `context` is its Response, body unread. */
export declare class FunctionsHttpError extends FunctionsError {
  context: Response
  constructor(context: Response)
}

export declare const FunctionRegion: {
  readonly Any: 'any'
  readonly ApNortheast1: 'ap-northeast-1'
  readonly ApNortheast2: 'ap-northeast-2'
  readonly ApSouth1: 'ap-south-1'
  readonly ApSoutheast1: 'ap-southeast-1'
  readonly ApSoutheast2: 'ap-southeast-2'
  readonly CaCentral1: 'ca-central-1'
  readonly EuCentral1: 'eu-central-1'
  readonly EuWest1: 'eu-west-1'
  readonly EuWest2: 'eu-west-2'
  readonly EuWest3: 'eu-west-3'
  readonly SaEast1: 'sa-east-1'
  readonly UsEast1: 'us-east-1'
  readonly UsWest1: 'us-west-1'
  readonly UsWest2: 'us-west-2'
}
export type FunctionRegion = (typeof FunctionRegion)[keyof typeof FunctionRegion]

export interface FunctionInvokeOptions {
  headers?: { [name: string]: string }
  method?: 'POST' | 'GET' | 'PUT' | 'PATCH' | 'DELETE'
  region?: FunctionRegion
  body?: Blob | ArrayBuffer | ArrayBufferView | FormData | string | Record<string, any> | null
  signal?: AbortSignal
  /** Milliseconds; past them the call ends with a FunctionsFetchError. */
  timeout?: number
}

export type FunctionsResponse<T> =
  | { data: T; error: null; response?: Response }
  | { data: null; error: FunctionsError | Error; response?: Response }

export declare class FunctionsClient {
  url: string
  headers: Record<string, string>
  region: FunctionRegion
  constructor(url: string, options?: { headers?: Record<string, string>; customFetch?: typeof fetch; region?: FunctionRegion; edgefc?: EdgeFCEndpoint })
  setAuth(token: string): void
  /** `functionName` is a function's name (with a sub-path and query, if any) or a URL whose last path segment is the name. Never rejects. */
  invoke<T = any>(functionName: string, options?: FunctionInvokeOptions): Promise<FunctionsResponse<T>>
}

export interface SupabaseClientOptions {
  global?: { headers?: Record<string, string> }
  edgefc?: EdgeFCEndpoint
  [option: string]: any
}

export interface SupabaseClient {
  readonly supabaseUrl: string
  readonly supabaseKey: string
  /** A new FunctionsClient on every access, sharing the client's headers. */
  readonly functions: FunctionsClient
}

/** The URL and key are accepted as the original API takes them; they need not point anywhere. */
export declare function createClient(supabaseUrl: string, supabaseKey: string, options?: SupabaseClientOptions): SupabaseClient
