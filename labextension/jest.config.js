/** Unit tests of the API layer: TypeScript through ts-jest, in Node (fetch is Node's). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: 'tests/tsconfig.json' }]
  }
};
