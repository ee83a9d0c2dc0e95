// Compiled with `tsc --noEmit` by __test__/types.test.js: the declarations
// must accept the upstream usage and reject wrong shapes.
import { CredentialProviderChain, EdgeFCError, ErrorCode, FCClient, Handler, InvokeResult, IoTData, startRuntime } from '../..'

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
  const stats = await runtime.stats()
  console.log(stats.droppedNoRoute)
  await runtime.stop()
  const iot = new IoTData()
  const messageId: string = await iot.publish({ topic: '/hello/world', payload: Buffer.from([1]) })
  const props = await iot.getThingProperties({ productKey: 'pk', deviceName: 'dn', payload: ['LightSwitch'] })
  await iot.setThingProperties({ productKey: 'pk', deviceName: 'dn', payload: { LightSwitch: 1 } })
  await iot.callThingService({ productKey: 'pk', deviceName: 'dn', service: 'Blink' })
  const things = await iot.getThingsWithTags({ payload: [{ room: 'kitchen' }] })
  const credentials = await new CredentialProviderChain().resolvePromise()
  console.log(messageId, props.LightSwitch, things[0].deviceName, credentials.accessKeyId)
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
// @ts-expect-error: publish needs a topic
fc.publish({ payload: 'x' })

void promises
