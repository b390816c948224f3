// typescript-eslint's recommended type-checked rules, plus the floating-promise check the extension relies on.
import tseslint from 'typescript-eslint';

export default tseslint.config(
    { ignores: ['out/', 'dist/', 'node_modules/', '*.mjs'] },
    ...tseslint.configs.recommendedTypeChecked,
    {
        languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
        rules: {
            '@typescript-eslint/no-floating-promises': 'error',
            eqeqeq: 'error',
        },
    },
    // node:test's test() and describe() return promises the runner itself awaits
    { files: ['test/**/*.ts'], rules: { '@typescript-eslint/no-floating-promises': 'off' } },
);
