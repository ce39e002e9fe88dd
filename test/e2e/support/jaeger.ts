// Reading traces back from Jaeger's query API: dev/stack/jaeger.ts's, shared with make demo.
export { field, jaegerTrace, list, parentOf, tag, traceTree, type JaegerSpan, type JaegerTag, type JaegerTrace } from '../../../dev/stack/jaeger.ts';
