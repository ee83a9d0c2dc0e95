// `require('edgefc/minapp')`: 知晓云's BaaS.invoke over the local edgefc runtime.

import type { EdgeFCEndpoint } from './supabase'

/** What `invoke` resolves: code 0 with the function's answer, or 1 with `error.message`. */
export type InvokeResult<T = any> =
  | { code: 0; data: T; error: {} }
  | { code: 1; data: null; error: { message: string; stack?: string } }

/** The platform's HError: a plain Error with a numeric code (404, 400, 600, 601, 605, ...). */
export interface HError extends Error {
  code: number
}

export interface MinappBaaS {
  /** Optional: a client id, as on the platform; `options.edgefc` says where the runtime is. */
  init(clientId?: string, options?: { edgefc?: EdgeFCEndpoint }): void
  /** Throws an HError (605) at once without a name; `sync: false` resolves `{code: 0, data: {status: 'ok'}}` once accepted. */
  invoke<T = any>(functionName: string, params?: any, sync?: boolean): Promise<InvokeResult<T>>
  /** Deprecated on the platform; the same call. */
  invokeFunction<T = any>(functionName: string, params?: any, sync?: boolean): Promise<InvokeResult<T>>
}

export declare const BaaS: MinappBaaS
/** As mini programs reach it. */
export declare const wx: { BaaS: MinappBaaS }
