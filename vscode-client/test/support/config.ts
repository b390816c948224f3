/** A stand-in for WorkspaceConfiguration("coda"): the user's values over package.json's defaults, as VS Code reads. */

import manifest from '../../package.json';
import { ConfigurationLike } from '../../src/settings';

const properties = manifest.contributes.configuration.properties as Record<string, { default?: unknown }>;

export function fakeConfiguration(values: Record<string, unknown> = {}): ConfigurationLike {
    return {
        get<T>(key: string): T | undefined {
            const value = key in values ? values[key] : properties[`coda.${key}`]?.default;
            return value as T | undefined;
        },
    };
}
