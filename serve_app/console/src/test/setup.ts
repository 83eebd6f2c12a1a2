// Vitest's setup for the component tests (jsdom): each test starts from an empty page.
import { cleanup } from "@testing-library/react";
import { afterEach } from "vitest";

afterEach(() => cleanup());
