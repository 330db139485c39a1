/** The slice of Node-RED's runtime API these nodes use (types only; nothing is imported at run time). */

export interface NodeMessage {
  [key: string]: unknown;
  _msgid?: string;
}

export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

export type SendFn = (msg: NodeMessage | (NodeMessage | null)[] | null) => void;
export type DoneFn = (err?: Error) => void;

export interface Node {
  id: string;
  name?: string;
  credentials: Record<string, string | undefined>;
  on(event: 'input', fn: (msg: NodeMessage, send: SendFn, done: DoneFn) => void): void;
  on(event: 'close', fn: (removed: boolean, done: () => void) => void): void;
  status(s: NodeStatus): void;
  send(msg: NodeMessage | (NodeMessage | null)[] | null): void;
  error(err: unknown, msg?: NodeMessage): void;
  warn(text: unknown): void;
  log(text: unknown): void;
  trace(text: unknown): void;
}

export interface NodeDef {
  id: string;
  type: string;
  name?: string;
  [key: string]: unknown;
}

export interface HttpRequest {
  body: Record<string, unknown>;
  params: Record<string, string>;
  query?: Record<string, unknown>;
}
export interface HttpResponse {
  json(v: unknown): void;
  status(n: number): { json(v: unknown): void };
}
export type HttpHandler = (req: HttpRequest, res: HttpResponse, next: () => void) => void;

export interface NodeAPI {
  nodes: {
    createNode(node: Node, def: NodeDef): void;
    registerType(
      type: string,
      ctor: (this: Node, def: NodeDef) => void,
      opts?: { credentials?: Record<string, { type: 'text' | 'password' }>; settings?: Record<string, unknown> },
    ): void;
    getNode(id: string): Node | null;
  };
  util: {
    evaluateNodeProperty(
      value: string,
      type: string,
      node: Node,
      msg: NodeMessage,
      cb: (err: Error | null, result: unknown) => void,
    ): void;
    cloneMessage<T>(msg: T): T;
    getMessageProperty(msg: NodeMessage, expr: string): unknown;
  };
  settings: { userDir?: string; [key: string]: unknown };
  httpAdmin: {
    get(path: string, guard: HttpHandler, handler: (req: HttpRequest, res: HttpResponse) => void): void;
    post(path: string, guard: HttpHandler, handler: (req: HttpRequest, res: HttpResponse) => void): void;
  };
  auth: { needsPermission(p: string): HttpHandler };
  _: (key: string, subs?: Record<string, unknown>) => string;
}
