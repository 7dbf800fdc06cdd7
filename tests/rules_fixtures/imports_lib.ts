/** A local module imported by imports.ts. */
export const FACTOR = 3;
