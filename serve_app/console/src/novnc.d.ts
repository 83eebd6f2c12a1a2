// Types for the parts of noVNC's RFB class (@novnc/novnc 1.7, which ships no types) that
// the console uses. See node_modules/@novnc/novnc/docs/API.md.
declare module "@novnc/novnc" {
  export interface RFBOptions {
    /** Share the desktop with other clients (true by default). */
    shared?: boolean;
    credentials?: { username?: string; password?: string; target?: string };
    repeaterID?: string;
    wsProtocols?: string[];
  }

  export interface RFBDisconnectDetail {
    /** False when the connection ended because of an error. */
    clean: boolean;
  }

  export interface RFBSecurityFailureDetail {
    status: number;
    reason?: string;
  }

  export default class RFB extends EventTarget {
    /** `urlOrChannel` is a ws(s) URL or an already created WebSocket. */
    constructor(target: HTMLElement, urlOrChannel: string | WebSocket, options?: RFBOptions);
    viewOnly: boolean;
    scaleViewport: boolean;
    clipViewport: boolean;
    resizeSession: boolean;
    focusOnClick: boolean;
    showDotCursor: boolean;
    background: string;
    qualityLevel: number;
    compressionLevel: number;
    disconnect(): void;
    focus(options?: FocusOptions): void;
    blur(): void;
    sendCtrlAltDel(): void;
  }
}
