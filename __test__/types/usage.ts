// Compiled with `tsc --noEmit` by __test__/types.test.js: the declarations
// must accept the upstream usage and reject wrong shapes.
import { EdgeFCError, ErrorCode, FCClient, Handler, InvokeResult, startRuntime } from '../..'

const fc = new FCClient()
fc.invokeFunction({ serviceName: 'EdgeFC', functionName: 'helloworld', invocationType: 'Sync', payload: 'x' }, (err, data) => {
  if (err) {
    const code: string = err.code
    console.log(code === ErrorCode.TIMEOUT)
  } else if (data) {
    const payload: string | Buffer = data.payload
    console.log(payload, data.functionError, data.statusCode)
  }
})

async function promises(): Promise<void> {
  const result: InvokeResult = await fc.invokeFunction({ functionId: 'id', payload: Buffer.from('x') })
  const id: string = await fc.invokeFunction({ functionId: 'id', invocationType: 'Async' })
  const runtime = await startRuntime('edgefc.json')
  await runtime.client({ timeoutMs: 100 }).invokeFunction({ functionId: 'x' })
  await runtime.stop()
  console.log(result, id, new EdgeFCError('ERR_CONFIG', 'm'))
}

export const handler: Handler = async (event, context) => {
  console.log(context.requestId, context.invokerContext.custom)
  return typeof event === 'string' ? event.length : event.byteLength
}

// @ts-expect-error: payload must be a string or bytes
fc.invokeFunction({ functionId: 'id', payload: 42 })
// @ts-expect-error: invocationType is Sync or Async
fc.invokeFunction({ functionId: 'id', invocationType: 'DryRun' })
// @ts-expect-error: a function must be named
fc.invokeFunction({ payload: 'x' })

void promises
